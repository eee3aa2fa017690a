//! Observing a running connector (the real binary): `/metrics` counts every applied change,
//! `/health` follows streaming and pausing, a taken port stops the start with a clear error,
//! and the log is free of color codes and passwords, as text or as JSON lines.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgmorph::cluster::ClusterOptions;
use pgmorph_e2e::{pgmorph_bin, run_bin, spawn_bin, wait_same, wait_streaming, Pair, DEADLINE};

const SCHEMA: &str = "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)";
const TABLES: [(&str, &str); 1] = [("public.items", "postgres.items")];
const PASSWORD: &str = "Metr1csNeverLeak";

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// `GET path` over HTTP/1.0: the status code and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The value of the sample of `name` whose labels include every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        let wanted = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        if !wanted {
            return None;
        }
        line.rsplit(' ').next()?.parse().ok()
    })
}

/// Polls `GET path` until `done` holds for the answer; returns it.
async fn poll(
    port: u16,
    path: &str,
    done: impl Fn(u16, &str) -> bool,
) -> anyhow::Result<(u16, String)> {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Ok((status, body)) = http_get(port, path) {
            if done(status, &body) {
                return Ok((status, body));
            }
            last = Some((status, body));
        }
        if start.elapsed() > DEADLINE {
            bail!("GET {path}: still {last:?} after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn applied(metrics: &str, op: &str) -> Option<f64> {
    sample(
        metrics,
        "pgmorph_changes_applied_total",
        &[("table", "public.items"), ("op", op)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_applied_change_and_health_follows_streaming() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let port = free_port();
    let top = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"");
    let (path, _) = pair.config("observed", &top, "tables = [\"public.items\"]")?;
    let path = path.to_str().context("config path")?;
    let log = pair.dir.path().join("observed.log");
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    let mut child = spawn_bin(&["run", "--config", path], &log);
    wait_streaming(&dst, "observed", None)
        .await
        .map_err(show_log)?;
    let (_, health) = poll(port, "/health", |s, _| s == 200).await?;
    assert_eq!(health, "streaming\n");

    // 300 inserts in 3 transactions, then 20 updates and 10 deletes in one each: 5 in all.
    for t in 0..3 {
        let first = t * 100 + 1;
        src.batch_execute(&format!(
            "INSERT INTO items SELECT g, 'v' || g FROM generate_series({first}, {}) g",
            first + 99
        ))
        .await?;
    }
    src.batch_execute("UPDATE items SET v = 'changed' WHERE id <= 20")
        .await?;
    src.batch_execute("DELETE FROM items WHERE id > 290")
        .await?;
    let (_, metrics) = poll(port, "/metrics", |_, body| {
        applied(body, "delete").is_some_and(|n| n >= 10.0)
    })
    .await?;
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    assert_eq!(applied(&metrics, "insert"), Some(300.0), "{metrics}");
    assert_eq!(applied(&metrics, "update"), Some(20.0), "{metrics}");
    assert_eq!(applied(&metrics, "delete"), Some(10.0), "{metrics}");
    let transactions = sample(&metrics, "pgmorph_transactions_applied_total", &[]);
    assert_eq!(transactions, Some(5.0), "{metrics}");
    let grouped = sample(&metrics, "pgmorph_group_commit_transactions_sum", &[]);
    assert_eq!(
        grouped,
        Some(5.0),
        "every transaction in some destination commit"
    );
    let lag = sample(&metrics, "pgmorph_apply_lag_seconds", &[]).context("lag in seconds")?;
    assert!((0.0..60.0).contains(&lag), "lag {lag}s");
    for name in ["pgmorph_apply_lag_bytes", "pgmorph_slot_retained_wal_bytes"] {
        assert!(sample(&metrics, name, &[]).is_some(), "{name}: {metrics}");
    }
    assert_eq!(sample(&metrics, "pgmorph_streaming", &[]), Some(1.0));
    assert_eq!(sample(&metrics, "pgmorph_errors_total", &[]), None);

    // Paused: unhealthy, with the reason; resumed: healthy again.
    let (ok, _, err) = run_bin(&["pause", "--config", path]);
    assert!(ok, "{err}");
    let (status, body) = poll(port, "/health", |s, _| s != 200).await?;
    assert_eq!((status, body.as_str()), (503, "paused\n"));
    let (ok, _, err) = run_bin(&["resume", "--config", path]);
    assert!(ok, "{err}");
    poll(port, "/health", |s, _| s == 200).await?;
    child.stop_cleanly()?;
    assert!(
        http_get(port, "/health").is_err(),
        "the endpoint ends with the connector"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_stops_the_start_with_a_clear_error() -> anyhow::Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("taken.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"taken\"\n[metrics]\nlisten = \"{addr}\"\n[log]\nformat = \"json\"\n\
             [source]\nurl = \"postgres://u@127.0.0.1:1/s\"\n\
             [destination]\nurl = \"postgres://u@127.0.0.1:1/d\"\n"
        ),
    )?;
    let path = path.to_str().context("config path")?;
    let expected = format!("cannot listen for metrics on {addr} ([metrics] listen)");

    // `[log] format = "json"`: the error is a JSON line.
    let out = Command::new(pgmorph_bin())
        .args(["run", "--config", path])
        .output()?;
    assert_eq!(out.status.code(), Some(78), "fix config");
    let err = String::from_utf8(out.stderr)?;
    let line = err.lines().last().context("an error line")?;
    let json: serde_json::Value = serde_json::from_str(line).context(err.clone())?;
    assert_eq!(json["level"], "ERROR", "{line}");
    assert!(
        json["message"].as_str().unwrap_or("").contains(&expected),
        "{line}"
    );

    // The flag wins over the config.
    let out = Command::new(pgmorph_bin())
        .args(["--log-format", "text", "run", "--config", path])
        .output()?;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.starts_with(&format!("error: {expected}")), "{err}");
    drop(taken);
    Ok(())
}

/// Runs the connector with stdout and stderr piped to files until the table matches, then
/// stops it; returns everything it wrote.
async fn run_logged(pair: &Pair, args: &[&str], tag: &str, rows: i32) -> anyhow::Result<String> {
    let (out_path, err_path) = (
        pair.dir.path().join(format!("{tag}.out")),
        pair.dir.path().join(format!("{tag}.err")),
    );
    let mut child = Command::new(pgmorph_bin())
        .args(args)
        .env("PGMORPH_LOG", "debug,tokio_postgres=info")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .stdin(Stdio::null())
        .spawn()?;
    let (src, dst) = pair.clients().await?;
    src.execute(
        "INSERT INTO items SELECT g, 'x' FROM generate_series($1::int, $1::int + 49) g",
        &[&rows],
    )
    .await?;
    let matched = wait_same(&src, &dst, &TABLES, None).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    let text = std::fs::read_to_string(&out_path)? + &std::fs::read_to_string(&err_path)?;
    matched.map_err(|e| e.context(text.clone()))?;
    assert!(status.success(), "{status}: {text}");
    Ok(text)
}

fn assert_clean(text: &str) {
    assert!(
        !text.contains("\x1b["),
        "color codes in piped output: {text}"
    );
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_logs_have_no_colors_or_password_and_json_lines_parse() -> anyhow::Result<()> {
    let pair = Pair::start_with_source(
        ClusterOptions::source().with_password(PASSWORD),
        ClusterOptions::destination(),
    )?;
    let (src, _) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (path, _) = pair.config("logged", "", "tables = [\"public.items\"]")?;
    assert!(std::fs::read_to_string(&path)?.contains(PASSWORD));
    let path = path.to_str().context("config path")?;

    let text = run_logged(&pair, &["run", "--config", path], "text", 1).await?;
    assert_clean(&text);
    assert!(text.contains(" INFO "), "text lines: {text}");

    let args = ["--log-format", "json", "run", "--config", path];
    let json = run_logged(&pair, &args, "json", 1000).await?;
    assert_clean(&json);
    let mut levels = std::collections::BTreeSet::new();
    for line in json.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        let level = v["level"]
            .as_str()
            .with_context(|| format!("no level: {line}"))?;
        assert!(v["message"].is_string(), "no message: {line}");
        levels.insert(level.to_string());
    }
    assert!(
        levels.contains("INFO") && levels.contains("DEBUG"),
        "{levels:?}"
    );
    Ok(())
}
