//! The live phase: the replicator runs and is caught up; a paced generator drives a steady
//! rate of row changes on the source for a fixed time while heartbeats measure how far the
//! destination trails (see [`lag`]).
//!
//! Three tasks share one clock: the load generator and the heartbeat (each on its own
//! source connection) and the destination poller. When both source tasks have ended, one
//! more marker update is committed after the load's last commit; the poller stops once it
//! sees it, which is when the destination has caught up with the whole load.
//!
//! Both source sessions commit with `synchronous_commit = on`: the walsender sends WAL only
//! once it is flushed, and with the server's `synchronous_commit = off` (the default
//! without `--durable`) that waits for the WAL writer (up to `wal_writer_delay`, 200 ms),
//! which would measure the source's settings instead of the replicator. With `fsync = off`
//! the flush costs no disk write.

pub mod lag;
pub mod lag_csv;
mod load;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::Workload;
use crate::pair::Pair;
use crate::workload::{self, LoadState, Sizes};
use lag::Lag;
use load::{Generated, Transactions};

/// How to run the live phases.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The loads with a live phase, in run order.
    pub loads: Vec<Workload>,
    /// How long the load runs.
    pub duration: Duration,
    /// Row changes per second.
    pub rate: u64,
    /// Row changes per source transaction (insert and update loads).
    pub tx_changes: u64,
    /// Time between heartbeats.
    pub heartbeat: Duration,
}

/// What one live phase measured.
#[derive(Debug, Clone)]
pub struct LiveResult {
    /// Row changes committed on the source.
    pub changes: u64,
    /// Seconds the load ran.
    pub secs: f64,
    /// The heartbeats' lag.
    pub lag: Lag,
    /// Every heartbeat: when its commit returned (since the load started) and its lag.
    pub beats: Vec<(Duration, Duration)>,
}

/// A live phase in progress. Dropping it stops its tasks.
pub struct LivePhase {
    load: Option<JoinHandle<Result<Generated>>>,
    beats: Option<JoinHandle<Result<Vec<Instant>>>>,
    poller: Option<JoinHandle<Result<Vec<Instant>>>>,
    last_seq: watch::Sender<Option<i64>>,
    first_seq: i64,
    start: Instant,
    generated: Option<Generated>,
    committed: Option<Vec<Instant>>,
}

impl LivePhase {
    /// Connects and starts the poller, the heartbeats and the load of `workload`.
    pub async fn start(
        workload: Workload,
        pair: &Pair,
        settings: &LiveSettings,
        sizes: &Sizes,
        state: &LoadState,
    ) -> Result<Self> {
        let transactions = Transactions::new(workload, sizes, settings.tx_changes, state.next_id)?;
        let load_client = pair.source.connect("postgres").await?;
        let beat_client = pair.source.connect("postgres").await?;
        for client in [&load_client, &beat_client] {
            client.batch_execute("SET synchronous_commit = on").await?;
        }
        let poll_client = pair.dest.connect("postgres").await?;
        let first_seq = state.marker + 1;
        let (last_seq, last_seq_rx) = watch::channel(None);
        let poller = tokio::spawn(lag::poll(poll_client, first_seq, last_seq_rx));
        let start = Instant::now();
        let until = start + settings.duration;
        let beats = tokio::spawn(lag::heartbeat(
            beat_client,
            first_seq,
            settings.heartbeat,
            start,
            until,
        ));
        let load = tokio::spawn(load::generate(
            load_client,
            transactions,
            settings.rate,
            start,
            until,
        ));
        Ok(Self {
            load: Some(load),
            beats: Some(beats),
            poller: Some(poller),
            last_seq,
            first_seq,
            start,
            generated: None,
            committed: None,
        })
    }

    /// Collects the tasks that have finished. Returns the result once the destination has
    /// seen the final marker, and moves `state` past the load's ids and markers.
    pub async fn progress(
        &mut self,
        pair: &Pair,
        state: &mut LoadState,
    ) -> Result<Option<LiveResult>> {
        if let Some(load) = self.load.take_if(|task| task.is_finished()) {
            let generated = load.await.context("live load task")??;
            state.next_id = generated.transactions.next_id(state.next_id);
            self.generated = Some(generated);
        }
        if let Some(beats) = self.beats.take_if(|task| task.is_finished()) {
            let committed = beats.await.context("heartbeat task")??;
            state.marker = self.first_seq + committed.len() as i64 - 1;
            self.committed = Some(committed);
        }
        let (Some(generated), Some(committed)) = (&self.generated, &self.committed) else {
            return Ok(None);
        };
        if self.last_seq.borrow().is_none() {
            // After the load's last commit: seeing it means the whole load is applied.
            workload::bump_marker(&pair.src, state).await?;
            self.last_seq.send_replace(Some(state.marker));
        }
        let Some(poller) = self.poller.take_if(|task| task.is_finished()) else {
            return Ok(None);
        };
        let seen = poller.await.context("destination poller task")??;
        Ok(Some(LiveResult {
            changes: generated.changes,
            secs: generated.secs,
            lag: Lag::from_instants(committed, &seen),
            beats: committed
                .iter()
                .zip(&seen)
                .map(|(c, s)| (*c - self.start, s.saturating_duration_since(*c)))
                .collect(),
        }))
    }
}

impl Drop for LivePhase {
    fn drop(&mut self) {
        if let Some(task) = &self.load {
            task.abort();
        }
        for task in [&self.beats, &self.poller].into_iter().flatten() {
            task.abort();
        }
    }
}
