//! Nothing is acknowledged to the source before the destination made it durable: a destination
//! that crashes and loses commits it had not flushed yet (`synchronous_commit = off`) gets them
//! again from the slot. And a slot that is ahead of the destination is never streamed past.

mod plugin_support;

use std::time::Duration;

use pgmorph::cluster::ClusterOptions;
use pgmorph::pipeline::Mode;
use pgmorph_e2e::{
    duplicated, spawn_bin, wait_same, wait_streaming, wait_until, Load, Pair, Running,
};

const SCHEMA: &str = "
CREATE TABLE events (writer int, seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
";

const TABLES: [(&str, &str); 1] = [("public.events", "postgres.events")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_with_asynchronous_commit_lose_nothing() -> anyhow::Result<()> {
    crash_rounds(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_with_synchronous_commit_lose_nothing() -> anyhow::Result<()> {
    crash_rounds(false).await
}

/// Five rounds: pgmorph streams a steady insert load, the destination crashes (immediate
/// stop) and starts again, pgmorph is started again. Every row arrives once.
async fn crash_rounds(async_commit: bool) -> anyhow::Result<()> {
    let mut pair = Pair::start_with(ClusterOptions {
        durable: true,
        ..ClusterOptions::destination()
    })?;
    let (src, _) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let name = if async_commit {
        "asynccrash"
    } else {
        "synccrash"
    };
    let (args, log) = plugin_support::binary_run(&pair, name, "schema = \"public\"", &[])?;
    if async_commit {
        let mut text = std::fs::read_to_string(&args[2])?;
        text.push_str("synchronous_commit_off = true\n");
        std::fs::write(&args[2], text)?;
    }
    let load = Load::start(
        pair.source.connect("postgres").await?,
        Duration::from_millis(5),
    );
    for round in 0..5 {
        let dst = pair.dest.connect("postgres").await?;
        let mut child = spawn_bin(&args, &log);
        let sql = format!(
            "SELECT state = 'polling' AND pid = {} FROM pgmorph.state WHERE name = '{name}'",
            child.id()
        );
        wait_until(&dst, &sql, None).await?;
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        pair.dest.crash_and_restart()?;
        child.kill();
    }
    let dst = pair.dest.connect("postgres").await?;
    let mut child = spawn_bin(&args, &log);
    load.stop().await?;
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    assert_eq!(duplicated(&dst, "postgres.events").await?, 0);
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_ahead_of_the_destination_stops_the_start_until_recopied() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute("INSERT INTO events SELECT 1, g, 'x' FROM generate_series(1, 100) g")
        .await?;
    let (_, config) = pair.config("gap", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "gap", Some(&running)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    running.stop().await?;

    // Changes the destination never gets: the slot is moved past them by hand (decoding reads
    // only flushed WAL, hence the synchronous commit).
    src.batch_execute(
        "BEGIN; SET LOCAL synchronous_commit = on; \
         INSERT INTO events SELECT 1, g, 'lost' FROM generate_series(101, 150) g; COMMIT",
    )
    .await?;
    let stored: String = dst
        .query_one(
            "SELECT last_offset->>'lsn' FROM pgmorph.state WHERE name = 'gap'",
            &[],
        )
        .await?
        .get(0);
    let moved: bool = src
        .query_one(
            &format!(
                "SELECT (pg_replication_slot_advance('pgmorph_gap', pg_current_wal_lsn())).end_lsn \
                 > '{stored}'"
            ),
            &[],
        )
        .await?
        .get(0);
    assert!(moved, "the slot did not move past {stored}");
    let err = Running::start(&config, Mode::Initial)
        .join()
        .await
        .expect_err("streamed past a gap");
    let text = err.to_string();
    assert!(
        text.contains("has confirmed changes up to") && text.contains("--mode always"),
        "{text}"
    );
    let count: i64 = dst
        .query_one("SELECT count(*) FROM postgres.events", &[])
        .await?
        .get(0);
    assert_eq!(count, 100, "nothing was applied past the gap");

    // The recovery the error offers: every table copied again, then streaming goes on.
    let running = Running::start(&config, Mode::Always);
    wait_streaming(&dst, "gap", Some(&running)).await?;
    src.batch_execute("INSERT INTO events SELECT 1, g, 'after' FROM generate_series(151, 160) g")
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    running.stop().await?;
    // And a plain restart afterwards streams on without complaint.
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "gap", Some(&running)).await?;
    src.batch_execute("INSERT INTO events VALUES (1, 161, 'later')")
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_eq!(duplicated(&dst, "postgres.events").await?, 0);
    running.stop().await?;
    Ok(())
}

/// The destination refuses a row (a CHECK constraint the source does not have): the connector
/// stops naming the table, the constraint, the row and the source position, acknowledges
/// nothing past it, and once the cause is fixed a start applies every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_destination_refuses_stops_the_connector_until_fixed() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config("refused", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "refused", Some(&running)).await?;
    dst.batch_execute(
        "ALTER TABLE postgres.events ADD CONSTRAINT short_payload CHECK (length(payload) < 10)",
    )
    .await?;
    for (seq, payload) in [(1, "ok"), (2, "far too long a payload"), (3, "ok")] {
        src.execute("INSERT INTO events VALUES (1, $1, $2)", &[&seq, &payload])
            .await?;
    }
    let err = running
        .join()
        .await
        .expect_err("the refused row was skipped");
    let text = pgmorph::error_chain::one_line(&err);
    for part in [
        "postgres.events",
        "short_payload",
        "far too long",
        "source transactions up to",
    ] {
        assert!(text.contains(part), "{part} not named: {text}");
    }
    assert_eq!(err.kind(), pgmorph::error_kind::ErrorKind::FixServer);
    let refused: i64 = dst
        .query_one("SELECT count(*) FROM postgres.events WHERE seq = 2", &[])
        .await?
        .get(0);
    assert_eq!(refused, 0);

    dst.batch_execute("ALTER TABLE postgres.events DROP CONSTRAINT short_payload")
        .await?;
    let running = Running::start(&config, Mode::Initial);
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_eq!(duplicated(&dst, "postgres.events").await?, 0);
    running.stop().await?;
    Ok(())
}
