//! TLS on every connection: certificates made here, servers with `ssl = on`, a connector whose
//! URLs say `sslmode=verify-full`, and the failures that must be loud (wrong CA, a server
//! without TLS under `require`), without the password ever showing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgmorph::cluster::{ClusterOptions, LocalCluster};
use pgmorph::config::ConnectionSettings;
use pgmorph_e2e::{duplicated, run_bin, spawn_bin, wait_same, wait_until, Load, Pair};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Rows from before the start have negative `seq`, [`Load`]'s rows count up from 0.
const SCHEMA: &str = "CREATE TABLE events (writer int, seq int, payload text);
    ALTER TABLE events REPLICA IDENTITY FULL;
    INSERT INTO events SELECT 0, -g, 'before' FROM generate_series(1, 500) g;";
const TABLES: [(&str, &str); 1] = [("events", "postgres.events")];
const PASSWORD: &str = "Scr4mOnlyInTheUrl";

/// A CA, a certificate for 127.0.0.1/localhost signed by it, and an unrelated CA.
struct Certs {
    ca: String,
    other_ca: String,
    server_cert: String,
    server_key: String,
}

impl Certs {
    fn new() -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "pgmorph test CA");
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let other_key = KeyPair::generate().unwrap();
        let other = CertificateParams::new(Vec::<String>::new()).unwrap();
        let other_pem = other.self_signed(&other_key).unwrap().pem();
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "server");
        let cert = leaf
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        Certs {
            ca: ca_pem,
            other_ca: other_pem,
            server_cert: cert.pem(),
            server_key: key.serialize_pem(),
        }
    }
}

/// Turns TLS on with the server certificate and waits until a `require` connection works.
async fn enable_tls(cluster: &LocalCluster, certs: &Certs) -> anyhow::Result<()> {
    cluster.enable_tls(&certs.server_cert, &certs.server_key)?;
    let probe = ConnectionSettings::from_url("source", &url(cluster, "sslmode=require"), None)?;
    let start = Instant::now();
    loop {
        match probe.connect("tls probe").await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(10) => {
                bail!("TLS did not come up: {e}\n{}", cluster.log_tail())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn url(cluster: &LocalCluster, params: &str) -> String {
    format!("{}?{params}", cluster.url("postgres"))
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn config(pair: &Pair, name: &str, source: &str, dest: &str) -> anyhow::Result<String> {
    let text = format!(
        "name = \"{name}\"\n[source]\nurl = \"{source}\"\nschema = \"public\"\n[destination]\nurl = \"{dest}\"\n"
    );
    Ok(write(pair.dir.path(), &format!("{name}.toml"), &text)?
        .to_str()
        .context("path")?
        .to_string())
}

/// `pgmorph run` fails; returns its last stderr line.
/// Runs `pgmorph run`, which must fail; returns its last line, having checked that the exit
/// code says to fix the config (78), as every failure here needs.
fn run_fails(path: &str) -> String {
    let out = std::process::Command::new(pgmorph_e2e::pgmorph_bin())
        .args(["run", "--config", path])
        .env("PGMORPH_LOG", "warn")
        .output()
        .expect("run pgmorph");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "pgmorph run should fail: {err}");
    assert!(!err.contains(PASSWORD), "{err}");
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(78), "fix config: {err}");
    err.lines().last().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_snapshot_cdc_and_kill_over_tls() -> anyhow::Result<()> {
    let pair = Pair::start_with_source(
        ClusterOptions::source().with_password(PASSWORD),
        ClusterOptions::destination(),
    )?;
    let certs = Certs::new();
    enable_tls(&pair.source, &certs).await?;
    enable_tls(&pair.dest, &certs).await?;
    let ca = write(pair.dir.path(), "ca.crt", &certs.ca)?;
    let tls = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let path = config(
        &pair,
        "tlsrun",
        &url(&pair.source, &tls),
        &url(&pair.dest, &tls),
    )?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;

    let log = pair.dir.path().join("tlsrun.log");
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    let mut child = spawn_bin(&["run", "--config", &path], &log);
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    let load = Load::start(
        pair.source.connect("postgres").await?,
        Duration::from_millis(2),
    );
    wait_until(&dst, "SELECT count(*) > 550 FROM postgres.events", None).await?;

    // The walsender and every pgmorph session on the destination run over TLS.
    let walsender = "SELECT count(*) = 1 AND bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_replication USING (pid)";
    wait_until(&src, walsender, None).await?;
    let sessions =
        "SELECT count(*) > 0 AND bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
        WHERE application_name LIKE 'pgmorph%' AND application_name <> 'pgmorph-cluster'";
    wait_until(&dst, sessions, None).await?;

    // kill -9 while changes flow, restart: nothing lost, nothing applied twice.
    child.kill();
    let mut child = spawn_bin(&["run", "--config", &path], &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = load.stop().await?;
    assert!(written > 0);
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    assert_eq!(duplicated(&dst, "postgres.events").await?, 0);
    wait_until(&src, walsender, None).await?;

    let (ok, out, err) = run_bin(&["status", "--config", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("tlsrun"), "{out}");
    child.stop_cleanly()?;
    let log = std::fs::read_to_string(&log)?;
    for text in [&out, &err, &log] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_and_require_without_tls_fail_clearly() -> anyhow::Result<()> {
    // The source has TLS, the destination does not.
    let pair = Pair::start_with_source(
        ClusterOptions::source().with_password(PASSWORD),
        ClusterOptions::destination(),
    )?;
    let certs = Certs::new();
    enable_tls(&pair.source, &certs).await?;
    let other = write(pair.dir.path(), "other.crt", &certs.other_ca)?;
    let ca = write(pair.dir.path(), "ca.crt", &certs.ca)?;
    let plain = url(&pair.dest, "sslmode=disable");

    let wrong = url(
        &pair.source,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    let err = run_fails(&config(&pair, "wrongca", &wrong, &plain)?);
    let expected = "the server certificate is not signed by a CA in sslrootcert";
    assert!(err.contains("source") && err.contains(expected), "{err}");

    let good = url(
        &pair.source,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let err = run_fails(&config(
        &pair,
        "notls",
        &good,
        &url(&pair.dest, "sslmode=require"),
    )?);
    assert!(
        err.contains("destination")
            && err.contains("does not support TLS but sslmode=require requires it"),
        "{err}"
    );

    // A certificate file that does not exist is a config error before anything connects.
    let missing = url(
        &pair.source,
        "sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt",
    );
    let err = run_fails(&config(&pair, "noca", &missing, &plain)?);
    assert!(
        err.contains("sslrootcert") && err.contains("/nonexistent/ca.crt"),
        "{err}"
    );
    Ok(())
}
