//! The variants and the run driver shared by the replicating ones.
//!
//! One run = fresh clusters, populate the source, time the snapshot, then for every CDC
//! workload: pause the replicator, run the load on the source, resume and time until the
//! marker arrives (backlog drain = apply capacity). The destination is compared with the
//! source after every phase.

pub mod copy_pipe;
pub mod native;
pub mod pgmorph;
pub mod plugins;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::{VariantKind, Workload};
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
    /// Keep fsync etc. on both servers.
    pub durable: bool,
    /// Tables copied at once.
    pub parallel: usize,
    /// Per-phase timeout.
    pub timeout: Duration,
    /// CDC workloads to run after the snapshot, in order.
    pub cdc: Vec<Workload>,
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
    /// Fails if the replicator has died or reports errors.
    async fn check(&mut self, pair: &Pair) -> Result<()>;
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
    let pair = Pair::start(ctx.durable, &dest_settings, &ctx.sizes)
        .await
        .context("setting up the clusters")?;
    let size = pair.snapshot_size().await?;
    match kind {
        VariantKind::Copy => copy_pipe::run(&pair, ctx, run, size).await,
        VariantKind::Native => drive(native::Native, &pair, ctx, kind, run, size).await,
        VariantKind::Pgmorph | VariantKind::PgmorphPassthrough | VariantKind::PgmorphChain => {
            let replicator = pgmorph::Pgmorph::new(ctx, kind)?;
            drive(replicator, &pair, ctx, kind, run, size).await
        }
    }
}

/// Times the snapshot and every CDC drain of one replicator.
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
    };
    eprintln!("{}", measurement.line());
    out.push(measurement);
    verify::compare(&pair.src, &pair.dst, &checks, "the snapshot").await?;
    r.check_transform(pair).await?;

    let mut state = LoadState::new(&ctx.sizes);
    for &load in &ctx.cdc {
        r.pause(pair, &Deadline::new("the replicator to stop", ctx.timeout))
            .await?;
        let changes =
            workload::apply_load(load, &pair.source, &pair.src, &ctx.sizes, &mut state).await?;
        let started = Instant::now();
        r.resume(pair).await?;
        let deadline = Deadline::new(format!("{} to catch up", load.label()), ctx.timeout);
        loop {
            r.check(pair).await?;
            if workload::marker(&pair.dst).await == Some(state.marker) {
                break;
            }
            deadline.tick().await?;
        }
        let measurement = Measurement {
            run,
            variant,
            workload: load,
            secs: started.elapsed().as_secs_f64(),
            units: changes,
            bytes: None,
            usage: r.usage(),
        };
        eprintln!("{}", measurement.line());
        out.push(measurement);
        verify::compare(&pair.src, &pair.dst, &checks, load.label()).await?;
    }
    r.finish().await?;
    Ok(out)
}
