//! Stopping, restarting and killing the connector never loses or repeats a change.

mod plugin_support;

use std::time::Duration;

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{run_bin, spawn_bin, wait_same, wait_streaming, wait_until, Pair, Running};

/// `events` has no key (REPLICA IDENTITY FULL), so a transaction applied twice shows up as
/// duplicate rows, and one applied zero times as missing rows.
const SCHEMA: &str = r#"
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE events (writer int, seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g;
"#;

const TABLES: [(&str, &str); 2] = [
    ("public.counters", "postgres.counters"),
    ("public.events", "postgres.events"),
];

async fn write_batch(src: &tokio_postgres::Client, from: i32, to: i32) -> anyhow::Result<()> {
    for seq in from..to {
        src.batch_execute(&format!(
            "BEGIN; INSERT INTO events VALUES (1, {seq}, repeat('p', {seq} % 50));
             UPDATE counters SET n = n + 1 WHERE id = {seq} % 10 + 1; COMMIT;"
        ))
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_resumes_without_redoing_the_snapshot() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config("restart", "", "schema = \"public\"")?;

    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "restart", Some(&running)).await?;
    write_batch(&src, 0, 50).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    running.stop().await?;
    let state: String = dst
        .query_one(
            "SELECT state FROM pgmorph.state WHERE name = 'restart'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(state, "stopped");
    let snap_end: String = dst
        .query_one(
            "SELECT snapshot_end::text FROM pgmorph.stats WHERE connector = 'restart'",
            &[],
        )
        .await?
        .get(0);

    // Changes made while stopped arrive after the restart, once.
    write_batch(&src, 50, 120).await?;
    let running = Running::start(&config, Mode::Initial);
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    let snap_end_after: String = dst
        .query_one(
            "SELECT snapshot_end::text FROM pgmorph.stats WHERE connector = 'restart'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(snap_end, snap_end_after, "the snapshot must not be redone");
    // The slot's confirmed position follows what the destination committed.
    let dest_lsn: String = dst
        .query_one(
            "SELECT last_offset->>'lsn' FROM pgmorph.state WHERE name = 'restart'",
            &[],
        )
        .await?
        .get(0);
    wait_until(
        &src,
        &format!("SELECT confirmed_flush_lsn >= '{dest_lsn}' FROM pg_replication_slots WHERE slot_name = 'pgmorph_restart'"),
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_cdc_under_load_loses_and_repeats_nothing() -> anyhow::Result<()> {
    kill_under_load(false).await
}

/// The same with a plugin that sees every row: changes wait for the plugins across the
/// transactions of a group commit, and a kill must still lose and repeat nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_cdc_with_a_row_plugin_loses_and_repeats_nothing() -> anyhow::Result<()> {
    kill_under_load(true).await
}

async fn kill_under_load(with_plugin: bool) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let passthrough = [("passthrough", "passthrough", "config = { rows = true }")];
    let plugins: &[_] = if with_plugin { &passthrough } else { &[] };
    let (args, log) = plugin_support::binary_run(&pair, "crash", "schema = \"public\"", plugins)?;

    let writer = {
        let src = pair.source.connect("postgres").await?;
        tokio::spawn(async move { write_batch(&src, 0, 1500).await })
    };
    for round in 0..3 {
        let mut child = spawn_bin(&args, &log);
        wait_until(&dst, "SELECT EXISTS (SELECT 1 FROM pgmorph.state WHERE name = 'crash' AND state = 'polling')", None)
            .await?;
        // Let it apply for a while, then kill it without warning.
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        child.kill();
        dst.batch_execute("UPDATE pgmorph.state SET state = 'killed' WHERE name = 'crash'")
            .await?;
    }
    writer.await??;
    let mut child = spawn_bin(&args, &log);
    // Streaming (its signal handler long installed) before it is stopped below: the last
    // killed process may already have applied everything.
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM pgmorph.state WHERE name = 'crash' AND state = 'polling')",
        None,
    )
    .await?;
    wait_same(&src, &dst, &TABLES, None).await?;
    let dups: i64 = dst
        .query_one(
            "SELECT count(*) - count(DISTINCT seq) FROM postgres.events",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(dups, 0);
    if with_plugin {
        let log = std::fs::read_to_string(&log)?;
        assert!(log.contains("plugin loaded"), "{log}");
    }
    // A clean stop by SIGTERM exits 0.
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_snapshot_then_restart_copies_everything_once() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute(
        "INSERT INTO events SELECT 0, g, repeat('s', 200) FROM generate_series(1, 400000) g",
    )
    .await?;
    let (path, _) = pair.config("snapcrash", "", "schema = \"public\"")?;
    let path = path.to_str().unwrap().to_string();
    let log = pair.dir.path().join("snapcrash.log");

    let mut child = spawn_bin(&["run", "--config", &path], &log);
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM pgmorph.tables WHERE connector = 'snapcrash' AND phase = 'copying')",
        None,
    )
    .await?;
    child.kill();
    // Changes made between the crash and the restart are not lost.
    write_batch(&src, 0, 20).await?;
    let mut child = spawn_bin(&["run", "--config", &path], &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    write_batch(&src, 20, 40).await?;
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    child.kill();
    let (ok, out, err) = run_bin(&["status", "--config", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("change data capture"), "{out}");
    Ok(())
}
