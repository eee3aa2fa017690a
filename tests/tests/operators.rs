//! Operator commands on real servers with the real binary: `pgmorph validate` (a good setup,
//! bad ones, and that it changes nothing), `pgmorph wait --lag 0`, and the snapshot's
//! progress in the log and in `pgmorph status`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pgmorph::cluster::ClusterOptions;
use pgmorph_e2e::{pgmorph_bin, spawn_bin, wait_streaming, wait_until, Pair};
use tokio_postgres::Client;

/// Runs `pgmorph ARGS` to completion with extra environment variables.
fn pgmorph(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pgmorph_bin());
    cmd.args(args).env("PGMORPH_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pgmorph")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn validate(path: &Path) -> (Option<i32>, String, String) {
    let out = pgmorph(&["validate", "--config", path.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// The report's line for check `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no check {name} in:\n{report}"))
}

async fn count(client: &Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Slots, publications (source) and pgmorph's or the destination schema (destination).
async fn footprint(src: &Client, dst: &Client) -> anyhow::Result<(i64, i64, i64)> {
    Ok((
        count(src, "SELECT count(*) FROM pg_replication_slots").await?,
        count(src, "SELECT count(*) FROM pg_publication").await?,
        count(
            dst,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('pgmorph', 'postgres')",
        )
        .await?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_passes_a_good_setup_and_changes_nothing() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE lines (a int, b int, v text, PRIMARY KEY (a, b));
         CREATE TABLE audit (v text); ALTER TABLE audit REPLICA IDENTITY FULL;",
    )
    .await?;
    let (path, _) = pair.config("good", "", "schema = \"public\"")?;
    let (code, report, stderr) = validate(&path);
    assert_eq!(code, Some(0), "{report}{stderr}");
    for name in [
        "source.connection",
        "source.wal_level",
        "source.role",
        "source.tables",
        "source.table:public.orders",
        "source.table:public.lines",
        "source.table:public.audit",
        "plugins.chain",
        "plugins.mapping",
        "destination.connection",
        "destination.schema:pgmorph",
        "destination.schema:postgres",
        "state.connector",
        "source.slots",
        "source.wal_senders",
        "source.slot",
        "source.publication",
    ] {
        assert!(line(&report, name).starts_with("ok "), "{report}");
    }
    let checks = report.lines().count() - 1;
    assert_eq!(
        report.lines().last(),
        Some(format!("{checks} checks: {checks} ok, 0 warnings, 0 errors").as_str())
    );
    assert!(line(&report, "source.table:public.lines").contains("primary key (a, b)"));
    assert!(line(&report, "source.table:public.audit").contains("replica identity full"));

    let out = pgmorph(
        &["validate", "--config", path.to_str().unwrap(), "--json"],
        &[],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["ok"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(checks));

    assert_eq!(
        footprint(&src, &dst).await?,
        (0, 0, 0),
        "validate created no slot, publication or schema"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_each_problem_and_exits_2() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         CREATE TABLE b (id int PRIMARY KEY, v text);
         CREATE TABLE nokey (id int, v text);
         INSERT INTO nokey VALUES (1, 'x');
         CREATE ROLE bob LOGIN;
         GRANT SELECT ON a, b TO bob;",
    )
    .await?;

    // A role without REPLICATION that owns nothing, and a table it may not read.
    let text = pair
        .config_text("bob", "", "tables = [\"public.a\", \"public.nokey\"]")
        .replacen("postgres://postgres@", "postgres://bob@", 1);
    let bob = pair.dir.path().join("bob.toml");
    std::fs::write(&bob, text)?;
    let (code, report, stderr) = validate(&bob);
    assert_eq!(code, Some(2), "{report}{stderr}");
    assert!(stderr.contains("checks found an error"), "{stderr}");
    let role = line(&report, "source.role");
    assert!(
        role.starts_with("error ") && role.contains("neither REPLICATION nor superuser"),
        "{role}"
    );
    assert!(
        role.contains("fix: ALTER ROLE \"bob\" REPLICATION"),
        "{role}"
    );
    let nokey = line(&report, "source.table:public.nokey");
    assert!(
        nokey.starts_with("error ") && nokey.contains("may not read"),
        "{nokey}"
    );
    let publication = line(&report, "source.publication");
    assert!(
        publication.starts_with("error ") && publication.contains("does not own public.a"),
        "{publication}"
    );

    // A table without a key, and a plugin mapping two tables to one destination name.
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    std::fs::copy(
        Path::new(env!("PGMORPH_PLUGIN_DIR")).join("pgmorph_plugin_rename.wasm"),
        plugins.join("10-rename.wasm"),
    )?;
    let top = format!("plugin_dir = \"{}\"", plugins.display());
    let (path, _) = pair.config("collide", &top, "schema = \"public\"")?;
    let config = std::fs::read_to_string(&path)?
        + "\n[plugins.10-rename.config]\n\
           tables = { \"public.a\" = \"shop.items\", \"public.b\" = \"shop.items\" }\n";
    std::fs::write(&path, config)?;
    let (code, report, _) = validate(&path);
    assert_eq!(code, Some(2), "{report}");
    let nokey = line(&report, "source.table:public.nokey");
    assert!(
        nokey.starts_with("error ") && nokey.contains("no primary key or replica identity"),
        "{nokey}"
    );
    assert!(nokey.contains("REPLICA IDENTITY FULL"), "{nokey}");
    let collision = line(&report, "plugins.mapping:shop.items");
    assert!(
        collision.starts_with("error ")
            && collision.contains("public.a, public.b all map to destination table shop.items"),
        "{collision}"
    );
    assert!(line(&report, "source.role").starts_with("ok "), "{report}");
    assert!(
        line(&report, "destination.schema:shop").starts_with("ok "),
        "{report}"
    );

    // The source keeps taking updates of the keyless table: nothing was published.
    src.batch_execute("UPDATE nokey SET v = 'y'").await?;
    assert_eq!(footprint(&src, &dst).await?, (0, 0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_refuses_a_source_without_logical_wal() -> anyhow::Result<()> {
    let source = ClusterOptions::source().with_setting("wal_level", "replica");
    let pair = Pair::start_with_source(source, ClusterOptions::destination())?;
    let (src, _) = pair.clients().await?;
    src.batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await?;
    let (path, _) = pair.config("replica", "", "schema = \"public\"")?;
    let (code, report, _) = validate(&path);
    assert_eq!(code, Some(2), "{report}");
    let wal = line(&report, "source.wal_level");
    assert!(
        wal.starts_with("error ") && wal.contains("wal_level is replica"),
        "{wal}"
    );
    assert!(
        wal.contains("ALTER SYSTEM SET wal_level = logical"),
        "{wal}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_once_earlier_rows_are_applied_and_times_out_when_stopped(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        .await?;
    let (path, _) = pair.config("cut", "", "schema = \"public\"")?;
    let config = path.to_str().unwrap();
    let log = pair.dir.path().join("cut.log");
    let mut running = spawn_bin(&["run", "--config", config], &log);
    wait_streaming(&dst, "cut", None).await?;

    for _ in 0..20 {
        src.batch_execute("INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 1000) g")
            .await?;
    }
    let out = pgmorph(
        &["wait", "--config", config, "--lag", "0", "--timeout", "60"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count(&dst, "SELECT count(*) FROM postgres.t").await?,
        20_000,
        "every row written before `wait` started is on the destination when it returns"
    );
    assert!(stdout.contains("applied up to"), "{stdout}");

    running.stop_cleanly()?;
    src.batch_execute("INSERT INTO t (v) VALUES ('after the stop')")
        .await?;
    let started = Instant::now();
    let out = pgmorph(
        &["wait", "--config", config, "--lag", "0", "--timeout", "2"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        stderr.contains("timed out after 2 s") && stderr.contains("no process runs the connector"),
        "{stderr}"
    );
    Ok(())
}

/// The text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Progress lines of the log: (table rows, its estimate) of `public.big`'s lines, and the
/// total lines' rows.
fn progress_lines(log: &str) -> (Vec<(u64, String)>, Vec<u64>) {
    let rows_of = |l: &str, key: &str| -> Option<(u64, String)> {
        let rest = &l[l.find(key)? + key.len()..];
        let (rows, rest) = rest.split_once('/')?;
        let est = rest.split_whitespace().next()?;
        Some((rows.parse().ok()?, est.to_string()))
    };
    let plain = strip_ansi(log);
    let lines = plain.lines().filter(|l| l.contains("snapshot progress"));
    let (mut table, mut total) = (Vec::new(), Vec::new());
    for l in lines {
        if l.contains("table=public.big") {
            table.extend(rows_of(l, "progress="));
        } else if let Some((rows, _)) = rows_of(l, "total=") {
            total.push(rows);
        }
    }
    (table, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_progress_is_logged_and_shown_by_status() -> anyhow::Result<()> {
    const ROWS: i64 = 600_000;
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(&format!(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, {ROWS}) g;
         CREATE TABLE small (id int PRIMARY KEY);
         INSERT INTO small VALUES (1), (2), (3);"
    ))
    .await?;
    src.batch_execute("VACUUM ANALYZE big").await?;
    src.batch_execute("VACUUM ANALYZE small").await?;
    let (path, _) = pair.config(
        "progress",
        "[snapshot]\nparallel = 1\n",
        "schema = \"public\"",
    )?;
    let config = path.to_str().unwrap();
    let log = pair.dir.path().join("progress.log");
    let file = std::fs::File::create(&log)?;
    let mut child = Command::new(pgmorph_bin())
        .args(["run", "--config", config])
        .env("PGMORPH_LOG", "info")
        .env("PGMORPH_PROGRESS_INTERVAL_MS", "200")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()?;

    // While it copies, `status --json` shows the big table's rows against its estimate.
    let mut seen_copying = None;
    let deadline = Instant::now() + pgmorph_e2e::DEADLINE;
    while Instant::now() < deadline {
        let out = pgmorph(&["status", "--config", config, "--json"], &[]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let big = &v["snapshot_progress"]["tables"]["public.big"];
            if big["done"] == true {
                break;
            }
            if big["rows"].as_u64().is_some_and(|r| r > 0) {
                seen_copying = Some(big.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        &dst,
        &format!("SELECT count(*) = {ROWS} FROM postgres.big"),
        None,
    )
    .await?;
    let during = seen_copying.expect("status showed the copy in progress at least once");
    assert_eq!(during["est_rows"], ROWS, "{during}");
    // Read while copying: every row may be read already, the copy not yet committed.
    assert!(during["rows"].as_i64().unwrap() <= ROWS, "{during}");
    assert_eq!(during["done"], false, "{during}");
    assert!(
        during["est_bytes"].as_u64().unwrap() > 100 << 20,
        "{during}"
    );
    assert!(during["bytes"].as_u64().unwrap() > 0, "{during}");

    // After the copy: the final numbers, per table and in all.
    wait_streaming(&dst, "progress", None).await?;
    let out = pgmorph(&["status", "--config", config], &[]);
    let (status, _) = text(&out);
    let big = status
        .lines()
        .find(|l| l.starts_with("  public.big "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(big.contains(&format!("{ROWS}/{ROWS} rows (100%)")), "{big}");
    assert!(big.contains("done in"), "{big}");
    assert!(
        status.contains(&format!(
            "snapshot        done: {}/{} rows",
            ROWS + 3,
            ROWS + 3
        )),
        "{status}"
    );
    let out = pgmorph(&["status", "--config", config, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["snapshot_progress"]["total"]["rows"], ROWS + 3);
    assert_eq!(v["snapshot_progress"]["tables"]["public.small"]["rows"], 3);

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    let log = std::fs::read_to_string(&log)?;
    let (table, total) = progress_lines(&log);
    assert!(
        table.len() >= 2,
        "several progress lines for public.big:\n{log}"
    );
    assert!(
        table.iter().all(|(_, est)| est == &ROWS.to_string()),
        "rows against the estimate:\n{log}"
    );
    assert!(
        table.windows(2).all(|w| w[0].0 <= w[1].0),
        "rows only grow:\n{log}"
    );
    assert_eq!(
        total.last().copied(),
        Some(ROWS as u64 + 3),
        "the last line reaches the row count:\n{log}"
    );
    Ok(())
}
