//! A running connector that loses a connection connects again by itself: the source or the
//! destination restarted or crashed, its backends terminated mid-transaction, the source down
//! for a while. It resumes where the destination's progress says (nothing lost, nothing
//! applied twice), `status` shows the attempts, and an error a retry cannot fix stops it.

mod plugin_support;

use std::time::{Duration, Instant};

use pgmorph_e2e::{
    run_bin, spawn_bin, start_writer, stop_writer_and_compare, terminate, BinProcess, Pair,
    DEADLINE,
};

const SCHEMA: &str = "
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE events (writer int, seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g;
INSERT INTO events SELECT 0, -g, 'before' FROM generate_series(1, 2000) g;
";

/// A fault done to the servers, named.
type Fault = (&'static str, fn(&mut Pair) -> anyhow::Result<()>);

const TABLES: [(&str, &str); 2] = [
    ("public.counters", "postgres.counters"),
    ("public.events", "postgres.events"),
];

/// Stages `pgmorph run` for connector `name` with the pass-through plugin on every row and
/// `reconnect` as the `[reconnect]` table.
fn stage(
    pair: &Pair,
    name: &str,
    reconnect: &str,
) -> anyhow::Result<(Vec<String>, std::path::PathBuf)> {
    let passthrough = [("passthrough", "passthrough", "config = { rows = true }")];
    let (args, log) = plugin_support::binary_run(pair, name, "schema = \"public\"", &passthrough)?;
    let mut text = std::fs::read_to_string(&args[2])?;
    text.push_str(&format!("[reconnect]\n{reconnect}\n"));
    std::fs::write(&args[2], text)?;
    Ok((args, log))
}

/// The state row's (state, pid, retries in a row, retries in all), if the destination answers.
async fn state_row(pair: &Pair, name: &str) -> Option<(String, i32, i32, i32)> {
    let dst = pair.dest.connect("postgres").await.ok()?;
    let row = dst
        .query_opt(
            "SELECT state, pid, retries, retries_total FROM pgmorph.state WHERE name = $1",
            &[&name],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2), row.get(3)))
}

/// Waits until `child` itself streams again after more than `total_before` retries in all;
/// returns the new total. The process must never stop meanwhile.
async fn wait_resumed(
    pair: &Pair,
    name: &str,
    child: &mut BinProcess,
    total_before: i32,
    log: &std::path::Path,
) -> anyhow::Result<i32> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        anyhow::ensure!(
            child.is_running(),
            "the connector stopped instead of reconnecting: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        if let Some((state, pid, retries, total)) = state_row(pair, name).await {
            if state == "polling"
                && pid == child.id() as i32
                && retries == 0
                && total > total_before
            {
                return Ok(total);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the connector did not stream again: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_retried_and_resume_exactly() -> anyhow::Result<()> {
    let mut pair = Pair::start()?;
    let src = pair.source.connect("postgres").await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = stage(&pair, "retry", "initial_delay_ms = 200\nmax_delay_s = 2")?;
    let (stop_writer, writer) = start_writer(pair.source.url("postgres"));
    let mut child = spawn_bin(&args, &log);
    let mut total = wait_resumed(&pair, "retry", &mut child, -1, &log).await?;
    assert_eq!(total, 0, "no retry before any fault");

    let faults: [Fault; 4] = [
        ("source restarted", |p| Ok(p.source.restart()?)),
        ("destination crashed", |p| Ok(p.dest.crash_and_restart()?)),
        ("destination backends terminated", |p| {
            terminate(&p.dest, "application_name LIKE 'pgmorph%'")
        }),
        ("source backends terminated", |p| {
            terminate(
                &p.source,
                "application_name LIKE 'pgmorph%' OR backend_type = 'walsender'",
            )
        }),
    ];
    for (what, fault) in faults {
        tokio::time::sleep(Duration::from_millis(700)).await;
        eprintln!("fault: {what}");
        fault(&mut pair)?;
        total = wait_resumed(&pair, "retry", &mut child, total, &log).await?;
    }

    // The source down for a while: status says the connector is reconnecting, and how often
    // it tried.
    pair.source.stop()?;
    let config = args[2].clone();
    let mut seen = String::new();
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let (_, out, _) = tokio::task::spawn_blocking({
            let config = config.clone();
            move || run_bin(&["status", "--config", &config])
        })
        .await?;
        seen = out;
        let retried_twice = state_row(&pair, "retry").await.is_some_and(|r| r.2 >= 2);
        if seen.contains("reconnecting") && retried_twice {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.contains("state           reconnecting") && seen.contains("retries "),
        "{seen}"
    );
    assert!(
        seen.contains("source") && seen.contains("retry later"),
        "{seen}"
    );
    pair.source.restart()?;
    total = wait_resumed(&pair, "retry", &mut child, total, &log).await?;

    let (written, _, doubled) =
        stop_writer_and_compare(&pair, (stop_writer, writer), &TABLES, &log).await?;
    eprintln!("reconnect: 5 faults, {total} attempts in all, {written} writer transactions, {doubled} doubled");
    assert_eq!(doubled, 0);
    assert!(child.is_running(), "one process did it all");
    child.stop_cleanly()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_a_retry_cannot_fix_stops_the_connector() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    // A long first pause: the slot is dropped before the connector connects again.
    let (args, log) = stage(&pair, "noslot", "initial_delay_ms = 4000\nmax_delay_s = 10")?;
    let mut child = spawn_bin(&args, &log);
    wait_resumed(&pair, "noslot", &mut child, -1, &log).await?;
    terminate(&pair.source, "backend_type = 'walsender'")?;
    let start = Instant::now();
    loop {
        let dropped = src
            .batch_execute("SELECT pg_drop_replication_slot('pgmorph_noslot')")
            .await;
        if dropped.is_ok() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(2),
            "slot still active: {dropped:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = child.wait_exit(DEADLINE).await?;
    let text = std::fs::read_to_string(&log)?;
    assert_eq!(status.code(), Some(69), "fix the source: {text}");
    assert!(
        text.contains("replication slot pgmorph_noslot is missing"),
        "{text}"
    );
    let row = dst
        .query_one(
            "SELECT state, retries_total, err FROM pgmorph.state WHERE name = 'noslot'",
            &[],
        )
        .await?;
    let (state, total, err): (String, i32, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((state.as_str(), total), ("error", 1), "{err}");
    assert!(err.contains("is missing on the source"), "{err}");
    Ok(())
}
