//! The variants and the run driver shared by the replicating ones.
//!
//! One run = fresh clusters, populate the source, time the snapshot, then for every CDC
//! workload: pause the replicator, run the load on the source, resume and time until the
//! marker arrives (backlog drain = apply capacity); then the live phases (steady load while
//! running, heartbeat lag) and last the big transaction (a backlog drain of one transaction,
//! last so that the bigger table does not slow the other phases' checks). The destination is
//! compared with the source after every phase.

pub mod copy_pipe;
pub mod decode_only;
pub mod native;
pub mod pgmorph;
pub mod plugins;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{Transport, VariantKind, Workload};
use crate::live::{lag_csv, LivePhase, LiveSettings};
use crate::pair::{Pair, SnapshotSize};
use crate::report::{Measurement, ProcUsage};
use crate::verify::{self, TableCheck};
use crate::wait::Deadline;
use crate::workload::{self, LoadState, Sizes};

/// Settings shared by every run.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Data sizes.
    pub sizes: Sizes,
    /// How the replicators reach the servers.
    pub transport: Transport,
    /// Keep fsync etc. on both servers.
    pub durable: bool,
    /// Tables copied at once.
    pub parallel: usize,
    /// pgmorph's apply connections (`apply.parallel`).
    pub apply_parallel: usize,
    /// Per-phase timeout.
    pub timeout: Duration,
    /// CDC backlog workloads to run after the snapshot, in order (the big transaction
    /// included, which runs last).
    pub cdc: Vec<Workload>,
    /// Live phases, if any.
    pub live: Option<LiveSettings>,
    /// Where to append every heartbeat's lag, if anywhere.
    pub lag_csv: Option<PathBuf>,
    /// The pgmorph binary.
    pub pgmorph: PathBuf,
    /// Built plugin components, if any.
    pub plugins_dir: Option<PathBuf>,
}

/// A replicator the driver can start, pause and resume.
pub(crate) trait Replicator {
    /// Untimed preparation (destination tables, publication, config files).
    async fn prepare(&mut self, pair: &Pair) -> Result<()>;
    /// Copies the initial data and returns once it is complete and streaming (timed).
    async fn snapshot(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()>;
    /// Stops applying changes; returns once the source no longer streams to it.
    async fn pause(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()>;
    /// Starts applying again (returns at once; the driver waits for the marker).
    async fn resume(&mut self, pair: &Pair) -> Result<()>;
    /// Before a live phase: starts a fresh process if the replicator has one of its own, so
    /// that its peak RSS belongs to the phase. Others keep running.
    async fn restart(&mut self, _pair: &Pair, _deadline: &Deadline) -> Result<()> {
        Ok(())
    }
    /// Fails if the replicator has died or reports errors.
    async fn check(&mut self, pair: &Pair) -> Result<()>;
    /// Once the marker is visible: whether everything before it is committed too (several
    /// apply connections commit on their own). `true` by default.
    async fn settled(&self, _pair: &Pair) -> Result<bool> {
        Ok(true)
    }
    /// Resource use so far of the current pgmorph process, if any.
    fn usage(&self) -> Option<ProcUsage>;
    /// What to compare between source and destination.
    fn checks(&self) -> Vec<TableCheck>;
    /// Checks that the transform really happened (the comparisons skip what it changes).
    async fn check_transform(&self, _pair: &Pair) -> Result<()> {
        Ok(())
    }
    /// Stops everything cleanly.
    async fn finish(&mut self) -> Result<()>;
}

/// Runs one repetition of `kind` on fresh clusters.
pub async fn run_once(kind: VariantKind, ctx: &Ctx, run: usize) -> Result<Vec<Measurement>> {
    let dest_settings = match kind {
        VariantKind::Native => native::dest_settings(ctx.parallel),
        _ => Vec::new(),
    };
    let pair = Pair::start(ctx.transport, ctx.durable, &dest_settings, &ctx.sizes)
        .await
        .context("setting up the clusters")?;
    let size = pair.snapshot_size().await?;
    match kind {
        VariantKind::Copy => copy_pipe::run(&pair, ctx, run, size).await,
        VariantKind::PgoutputRead => decode_only::run(&pair, ctx, run).await,
        VariantKind::Native => drive(native::Native, &pair, ctx, kind, run, size).await,
        VariantKind::Pgmorph
        | VariantKind::PgmorphPassthrough
        | VariantKind::PgmorphChain
        | VariantKind::PgmorphSyncCommit
        | VariantKind::PgmorphUnbatched
        | VariantKind::PgmorphText => {
            let replicator = pgmorph::Pgmorph::new(ctx, kind)?;
            drive(replicator, &pair, ctx, kind, run, size).await
        }
    }
}

/// How often the driver checks the replicator's health during a live phase.
const LIVE_CHECK: Duration = Duration::from_millis(50);

/// Times the snapshot, every CDC drain and every live phase of one replicator.
async fn drive(
    mut r: impl Replicator,
    pair: &Pair,
    ctx: &Ctx,
    variant: VariantKind,
    run: usize,
    size: SnapshotSize,
) -> Result<Vec<Measurement>> {
    let checks = r.checks();
    let mut out = Vec::new();
    r.prepare(pair).await?;
    let started = Instant::now();
    r.snapshot(pair, &Deadline::new("the snapshot", ctx.timeout))
        .await?;
    let measurement = Measurement {
        run,
        variant,
        workload: Workload::Snapshot,
        secs: started.elapsed().as_secs_f64(),
        units: size.rows,
        bytes: Some(size.bytes),
        usage: r.usage(),
        lag: None,
        walsender_cpu: None,
        apply_cpu: None,
    };
    eprintln!("{}", measurement.line());
    out.push(measurement);
    verify::compare(&pair.src, &pair.dst, &checks, "the snapshot").await?;
    r.check_transform(pair).await?;
    pair.check_tls().await?;

    let scope = Scope {
        pair,
        ctx,
        variant,
        run,
    };
    let mut state = LoadState::new(&ctx.sizes);
    let (bigtx, backlog): (Vec<Workload>, Vec<Workload>) = ctx
        .cdc
        .iter()
        .partition(|w| matches!(w, Workload::Bigtx | Workload::BigtxCommit));
    // With parallel apply the other connections may still be committing the marker's group.
    let patience = match ctx.apply_parallel {
        1 => std::time::Duration::ZERO,
        _ => std::time::Duration::from_secs(10),
    };
    for load in backlog {
        out.push(drain(&mut r, &scope, load, &mut state).await?);
        verify::compare_settled(&pair.src, &pair.dst, &checks, load.label(), patience).await?;
    }
    if let Some(live) = &ctx.live {
        for &load in &live.loads {
            out.push(live_phase(&mut r, &scope, live, load, &mut state).await?);
            verify::compare(&pair.src, &pair.dst, &checks, load.live_label()).await?;
        }
    }
    for load in bigtx {
        out.push(match load {
            Workload::BigtxCommit => after_commit(&mut r, &scope, load, &mut state).await?,
            _ => drain(&mut r, &scope, load, &mut state).await?,
        });
        verify::compare(&pair.src, &pair.dst, &checks, load.label()).await?;
    }
    r.finish().await?;
    Ok(out)
}

/// What the phases of one run share.
struct Scope<'a> {
    pair: &'a Pair,
    ctx: &'a Ctx,
    variant: VariantKind,
    run: usize,
}

/// One backlog drain: pause, load the source, resume and time until the marker arrives.
async fn drain(
    r: &mut impl Replicator,
    scope: &Scope<'_>,
    load: Workload,
    state: &mut LoadState,
) -> Result<Measurement> {
    let (pair, ctx) = (scope.pair, scope.ctx);
    settle_slots(r, pair, state, ctx).await?;
    r.pause(pair, &Deadline::new("the replicator to stop", ctx.timeout))
        .await?;
    let changes = workload::apply_load(load, &pair.source, &pair.src, &ctx.sizes, state).await?;
    let started = Instant::now();
    r.resume(pair).await?;
    let deadline = Deadline::new(format!("{} to catch up", load.label()), ctx.timeout);
    wait_for_marker(r, pair, state.marker, &deadline).await?;
    let secs = started.elapsed().as_secs_f64();
    backlog_measurement(r, scope, load, secs, changes).await
}

/// One big transaction written while a fresh, caught-up replicator runs, timed from its
/// commit until the marker committed right after it arrives.
async fn after_commit(
    r: &mut impl Replicator,
    scope: &Scope<'_>,
    load: Workload,
    state: &mut LoadState,
) -> Result<Measurement> {
    let (pair, ctx) = (scope.pair, scope.ctx);
    restart_caught_up(r, pair, ctx, state, "the replicator to catch up").await?;
    let changes = workload::apply_load(load, &pair.source, &pair.src, &ctx.sizes, state).await?;
    let committed = Instant::now();
    let deadline = Deadline::new(format!("{} to arrive", load.label()), ctx.timeout);
    wait_for_marker(r, pair, state.marker, &deadline).await?;
    let secs = committed.elapsed().as_secs_f64();
    backlog_measurement(r, scope, load, secs, changes).await
}

/// A fresh replicator that has applied everything written so far.
async fn restart_caught_up(
    r: &mut impl Replicator,
    pair: &Pair,
    ctx: &Ctx,
    state: &mut LoadState,
    what: &str,
) -> Result<()> {
    r.restart(
        pair,
        &Deadline::new("the replicator to restart", ctx.timeout),
    )
    .await?;
    workload::bump_marker(&pair.src, state).await?;
    wait_for_marker(r, pair, state.marker, &Deadline::new(what, ctx.timeout)).await
}

/// What a backlog of `changes` that took `secs` cost, printed as it is measured.
async fn backlog_measurement(
    r: &mut impl Replicator,
    scope: &Scope<'_>,
    load: Workload,
    secs: f64,
    changes: u64,
) -> Result<Measurement> {
    let measurement = Measurement {
        run: scope.run,
        variant: scope.variant,
        workload: load,
        secs,
        units: changes,
        bytes: None,
        usage: r.usage(),
        lag: None,
        walsender_cpu: walsender_cpu(scope.pair).await?,
        apply_cpu: apply_cpu(scope.pair).await?,
    };
    eprintln!("{}", measurement.line());
    Ok(measurement)
}

/// One live phase: a fresh, caught-up replicator, then the steady load with heartbeats
/// until the destination has seen the last one.
async fn live_phase(
    r: &mut impl Replicator,
    scope: &Scope<'_>,
    live: &LiveSettings,
    load: Workload,
    state: &mut LoadState,
) -> Result<Measurement> {
    let Scope {
        pair,
        ctx,
        variant,
        run,
    } = *scope;
    let what = "the replicator to catch up before a live phase";
    restart_caught_up(r, pair, ctx, state, what).await?;
    let before = r.usage();
    let mut phase = LivePhase::start(load, pair, live, &ctx.sizes, state).await?;
    let deadline = Deadline::new(
        format!("{} to catch up", load.live_label()),
        live.duration + ctx.timeout,
    );
    let result = loop {
        r.check(pair).await?;
        if let Some(result) = phase.progress(pair, state).await? {
            break result;
        }
        deadline.check()?;
        tokio::time::sleep(LIVE_CHECK).await;
    };
    // Peak RSS since the restart; CPU used during the phase only.
    let usage = r.usage().map(|after| ProcUsage {
        peak_rss_kib: after.peak_rss_kib,
        cpu_secs: after.cpu_secs - before.map_or(0.0, |b| b.cpu_secs),
    });
    if let Some(path) = &ctx.lag_csv {
        lag_csv::append(path, run, variant, load, &result.beats)?;
    }
    let measurement = Measurement {
        run,
        variant,
        workload: load,
        secs: result.secs,
        units: result.changes,
        bytes: None,
        usage,
        lag: Some(result.lag),
        walsender_cpu: None,
        apply_cpu: None,
    };
    eprintln!("{}", measurement.line());
    Ok(measurement)
}

/// Rounds of [`settle_slots`] before giving up (a slot takes one new restart candidate per
/// confirmation, so a stale candidate can cost a round).
const SETTLE_ROUNDS: usize = 4;
/// How long one round waits for the replicator to confirm past the checkpoint (replicators
/// confirm at least once a second).
const SETTLE_WAIT: Duration = Duration::from_millis(2500);

/// Moves the restart point of every active logical slot past the WAL already applied, so the
/// next drain's walsender decodes its own backlog only, not also the previous phase's WAL (a
/// slot restarts decoding at its `restart_lsn`, which moves only to a point where the source
/// logged its running transactions, about every 15 s or at a checkpoint; without this the
/// re-decoded share differed from run to run). Each round: a checkpoint logs the running
/// transactions, a marker transaction gives the replicator something to confirm past it, and
/// the walsender moves the slot when the confirmation arrives.
async fn settle_slots(
    r: &mut impl Replicator,
    pair: &Pair,
    state: &mut LoadState,
    ctx: &Ctx,
) -> Result<()> {
    let target: String = pair
        .src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    for _ in 0..SETTLE_ROUNDS {
        pair.src.batch_execute("CHECKPOINT").await?;
        workload::bump_marker(&pair.src, state).await?;
        let deadline = Deadline::new("the replicator to confirm a checkpoint", ctx.timeout);
        wait_for_marker(r, pair, state.marker, &deadline).await?;
        let waited = Instant::now();
        while waited.elapsed() < SETTLE_WAIT {
            if slots_past(pair, &target).await? {
                return Ok(());
            }
            tokio::time::sleep(crate::wait::POLL * 5).await;
        }
    }
    eprintln!("note: a slot's restart point stayed before {target}; the next drain may re-decode older WAL");
    Ok(())
}

/// Whether every active logical slot on the source restarts decoding at or after `lsn`.
async fn slots_past(pair: &Pair, lsn: &str) -> Result<bool> {
    Ok(pair
        .src
        .query_one(
            "SELECT coalesce(bool_and(restart_lsn >= $1::text::pg_lsn), true) \
             FROM pg_replication_slots WHERE slot_type = 'logical' AND active",
            &[&lsn],
        )
        .await?
        .get(0))
}

/// CPU seconds used so far by the source's walsenders (the replicator's stream; started by
/// the resume), `None` if there is none.
async fn walsender_cpu(pair: &Pair) -> Result<Option<f64>> {
    backends_cpu(&pair.src, "SELECT pid FROM pg_stat_replication").await
}

/// The CPU seconds used so far by the server processes whose pids `sql` lists, summed;
/// `None` if it lists none.
async fn backends_cpu(client: &tokio_postgres::Client, sql: &str) -> Result<Option<f64>> {
    let rows = client.query(sql, &[]).await?;
    let cpu: Vec<f64> = rows
        .iter()
        .filter_map(|row| crate::process::cpu_secs(row.get::<_, i32>(0) as u32))
        .collect();
    Ok((!cpu.is_empty()).then(|| cpu.iter().sum()))
}

/// CPU seconds used so far by the destination backends applying changes: native's apply
/// worker (started by the resume) or pgmorph's connections (a fresh process each drain), not
/// the benchmark's own (`pgmorph-cluster`).
/// `None` if there is none.
async fn apply_cpu(pair: &Pair) -> Result<Option<f64>> {
    backends_cpu(
        &pair.dst,
        "SELECT pid FROM pg_stat_activity \
         WHERE backend_type = 'logical replication worker' \
            OR (application_name LIKE 'pgmorph%' AND application_name <> 'pgmorph-cluster')",
    )
    .await
}

/// Waits until the destination's marker is `marker`, checking the replicator's health.
async fn wait_for_marker(
    r: &mut impl Replicator,
    pair: &Pair,
    marker: i64,
    deadline: &Deadline,
) -> Result<()> {
    loop {
        r.check(pair).await?;
        if workload::marker(&pair.dst).await == Some(marker) {
            break;
        }
        deadline.tick().await?;
    }
    while !r.settled(pair).await? {
        r.check(pair).await?;
        deadline.tick().await?;
    }
    Ok(())
}
