//! Chaos: while a writer keeps changing the source and a plugin sees every row, random faults
//! hit the running connector (SIGKILL during the snapshot and during CDC, a plugin reload, a
//! crash of the destination, a restart of the source, its backends terminated on either
//! side). After each fault the connector is started again if it stopped. At the end every
//! table must equal its source: nothing lost, nothing applied twice.
//!
//! A short run (each fault once) is part of the suite; `PGMORPH_CHAOS_ROUNDS=N` runs a longer soak, and
//! `PGMORPH_CHAOS_SEED` replays one.

mod plugin_support;

use std::time::{Duration, Instant};

use pgmorph_e2e::{
    spawn_bin, start_writer, stop_writer_and_compare, terminate, BinProcess, Pair, DEADLINE,
};

const SCHEMA: &str = "
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE events (writer int, seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g;
INSERT INTO events SELECT 0, -g, repeat('s', 100) FROM generate_series(1, 150000) g;
";

const TABLES: [(&str, &str); 2] = [
    ("public.counters", "postgres.counters"),
    ("public.events", "postgres.events"),
];

/// The faults, picked at random each round.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillConnector,
    ReloadPlugins,
    CrashDestination,
    RestartSource,
    TerminateDestinationBackends,
    TerminateWalsender,
}

const FAULTS: [Fault; 6] = [
    Fault::KillConnector,
    Fault::ReloadPlugins,
    Fault::CrashDestination,
    Fault::RestartSource,
    Fault::TerminateDestinationBackends,
    Fault::TerminateWalsender,
];

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_lose_and_repeat_nothing() -> anyhow::Result<()> {
    let rounds: usize = env_or("PGMORPH_CHAOS_ROUNDS", 6);
    let seed: u64 = env_or("PGMORPH_CHAOS_SEED", 0x5eed_c4a0_5000_0001);
    let mut rng = Rng(seed);
    let mut order = FAULTS;
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut pair = Pair::start()?;
    let src = pair.source.connect("postgres").await?;
    src.batch_execute(SCHEMA).await?;
    let passthrough = [("passthrough", "passthrough", "config = { rows = true }")];
    let (args, log) =
        plugin_support::binary_run(&pair, "chaos", "schema = \"public\"", &passthrough)?;
    let config_text = std::fs::read_to_string(&args[2])?;
    let (stop_writer, writer) = start_writer(pair.source.url("postgres"));

    // The first fault always lands during the snapshot.
    let mut child = spawn_bin(&args, &log);
    wait_for(
        &pair,
        "SELECT EXISTS (SELECT 1 FROM pgmorph.tables WHERE phase = 'copying')",
    )
    .await?;
    child.kill();
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    *counts.entry("KillConnector (snapshot)".into()).or_default() += 1;
    child = spawn_bin(&args, &log);
    for round in 0..rounds {
        child = ensure_streaming(&pair, child, &args, &log).await?;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(600))).await;
        // Every kind once first (in a random order), then at random.
        let fault = match order.get(round) {
            Some(&fault) => fault,
            None => FAULTS[rng.below(FAULTS.len() as u64) as usize],
        };
        *counts.entry(format!("{fault:?}")).or_default() += 1;
        eprintln!("chaos round {round}: {fault:?}");
        match fault {
            Fault::KillConnector => child.kill(),
            Fault::ReloadPlugins => {
                // Toggle whether the plugin sees rows: the chain is rebuilt and swapped in.
                let rows = if round % 2 == 0 { "false" } else { "true" };
                let text = config_text.replace("rows = true", &format!("rows = {rows}"));
                std::fs::write(&args[2], text)?;
            }
            Fault::CrashDestination => pair.dest.crash_and_restart()?,
            Fault::RestartSource => pair.source.restart()?,
            Fault::TerminateDestinationBackends => {
                terminate(&pair.dest, "application_name LIKE 'pgmorph%'")?;
            }
            Fault::TerminateWalsender => terminate(&pair.source, "backend_type = 'walsender'")?,
        }
    }
    child = ensure_streaming(&pair, child, &args, &log).await?;
    let (written, rows, doubled) =
        stop_writer_and_compare(&pair, (stop_writer, writer), &TABLES, &log).await?;
    eprintln!(
        "chaos: seed {seed:#x}, {rounds} rounds, faults {counts:?}, {written} writer \
         transactions, {rows} event rows compared equal, 0 lost, {doubled} doubled"
    );
    assert_eq!(doubled, 0);
    child.stop_cleanly()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `sql` (one boolean) on the destination, reconnecting as needed, until it is true.
async fn wait_for(pair: &Pair, sql: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(dst) = pair.dest.connect("postgres").await {
            if let Ok(Some(row)) = dst.query_opt(sql, &[]).await {
                if row.get::<_, Option<bool>>(0) == Some(true) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for: {sql}")
}

/// Starts the connector again whenever it has stopped, until it streams and is still
/// streaming a second later (a fault may stop it a moment after it looked fine).
async fn ensure_streaming(
    pair: &Pair,
    mut child: BinProcess,
    args: &[String],
    log: &std::path::Path,
) -> anyhow::Result<BinProcess> {
    let start = Instant::now();
    let mut streaming_since: Option<Instant> = None;
    while start.elapsed() < DEADLINE {
        if !child.is_running() {
            child = spawn_bin(args, log);
            streaming_since = None;
        }
        if streams(pair, &child).await {
            let since = *streaming_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return Ok(child);
            }
        } else {
            streaming_since = None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    anyhow::bail!("the connector did not stream again: {text}")
}

/// Whether `child` streams: its state row says so and its lock's session is alive (the row
/// alone may be stale, from a process killed before it could say so).
async fn streams(pair: &Pair, child: &BinProcess) -> bool {
    let sql = format!(
        "SELECT state = 'polling' AND pid = {} AND EXISTS (SELECT 1 FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = 7419284 AND granted) \
         FROM pgmorph.state WHERE name = 'chaos'",
        child.id()
    );
    let Ok(dst) = pair.dest.connect("postgres").await else {
        return false;
    };
    matches!(dst.query_opt(&sql, &[]).await, Ok(Some(row)) if row.get::<_, Option<bool>>(0) == Some(true))
}
