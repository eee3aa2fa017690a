//! TLS for `--transport tls`: a self-signed certificate made for the run, put in a server's data
//! directory, and `ssl = on` by reload. The replicators connect with `sslmode=require`, which
//! encrypts without checking the certificate: the cost measured is the encryption's.

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pgmorph::cluster::LocalCluster;

/// Turns TLS on for `cluster` and waits until new sessions see it.
pub async fn enable(cluster: &LocalCluster) -> Result<()> {
    let key = rcgen::KeyPair::generate().context("making a TLS key")?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .context("making a TLS certificate")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    let dir = cluster.data_dir();
    let owner = std::fs::metadata(dir)?;
    for (name, text) in [
        ("bench.crt", cert.pem()),
        ("bench.key", key.serialize_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        chown(&path, Some(owner.uid()), Some(owner.gid()))?;
    }
    let client = cluster.connect("postgres").await?;
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'bench.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'bench.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await?;
    }
    let start = Instant::now();
    loop {
        let on: String = cluster
            .connect("postgres")
            .await?
            .query_one("SHOW ssl", &[])
            .await?
            .get(0);
        if on == "on" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("TLS did not come up:\n{}", cluster.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
