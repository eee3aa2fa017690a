//! The CDC loop: one source transaction at a time, applied as one destination transaction,
//! acknowledged only after the destination committed it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use super::relations::{RelationError, RelationUpdate, Relations};
use super::reload::{self, Prepared};
use super::transform::{
    start_row_step, RowStepError, SharedTransform, TableBatch, MAX_BATCH_BYTES,
};
use crate::model::{Lsn, Op, Row, RowChange, TableMapping};
use crate::sink::{ddl, ApplyError, Sink};
use crate::source::pgoutput::Message;
use crate::source::stream::{ReplicationStream, StreamError, StreamEvent};
use crate::state::{Progress, StateStore};

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The next validated chain, or never when reloading is off.
async fn next_reload(rx: &mut Option<mpsc::Receiver<Prepared>>) -> Option<Prepared> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How often operator requests are polled between transactions.
const REQUEST_POLL: Duration = Duration::from_millis(500);

/// Changes of one table handed to the row step at once.
const ROW_BATCH: usize = 1000;

/// The CDC loop stopped with an error; the open transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The replication stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A relation could not be mapped.
    #[error(transparent)]
    Relation(#[from] RelationError),
    /// The row step failed under the `stop` policy.
    #[error(transparent)]
    Transform(#[from] RowStepError),
    /// Preparing the destination for a changed relation failed.
    #[error("adapting destination table {table} to a source change: {source}")]
    Ddl {
        /// Destination table.
        table: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// The stream ended on its own.
    #[error("the source closed the replication stream")]
    Ended,
    /// Reading operator requests failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Why the loop returned without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Shutdown was requested (signal or `pgmorph stop`).
    Shutdown,
    /// `pgmorph resync` asked for tables to be copied again; the stream is between transactions.
    Resync,
    /// The reloaded config replicates other tables; [`Cdc::restart_with`] holds it.
    Restart,
}

/// Source transactions applied in one destination transaction, at most.
const MAX_GROUP_TX: i64 = 200;
/// How long a destination transaction may stay open to take in more source transactions.
const MAX_GROUP_DELAY: Duration = Duration::from_millis(100);

/// Whole source transactions applied in the open destination transaction, not committed yet.
///
/// Group commit: a source transaction's commit goes out at once when the writer has no commit
/// in flight. While one is in flight the destination is the bottleneck, so the following
/// source transactions join the open destination transaction, which commits when the writer
/// is free again (or at [`MAX_GROUP_TX`] transactions or after [`MAX_GROUP_DELAY`]). Each
/// source transaction still lands whole or not at all, and progress is written with the group.
struct Group {
    started: Instant,
    transactions: i64,
    /// Progress of the last source transaction in the group.
    progress: Progress,
}

impl Group {
    fn full(&self) -> bool {
        self.transactions >= MAX_GROUP_TX || self.started.elapsed() >= MAX_GROUP_DELAY
    }
}

/// Changes read but not written yet: consecutive changes of one table in one transaction
/// form a batch. Batches go through the row step together, up to [`ROW_BATCH`] rows, so
/// small transactions that touch several tables pay the trip to the plugins once per group
/// commit rather than once per table.
#[derive(Default)]
struct Pending {
    batches: Vec<TableBatch>,
    /// Each batch's transaction (its final LSN), for dead letters.
    lsns: Vec<Lsn>,
    rows: usize,
    /// Bytes of values held.
    bytes: usize,
}

impl Pending {
    fn push(&mut self, mapping: Arc<TableMapping>, change: RowChange, lsn: Lsn) {
        self.rows += 1;
        self.bytes += change.value_bytes();
        if let (Some(last), Some(&last_lsn)) = (self.batches.last_mut(), self.lsns.last()) {
            if Arc::ptr_eq(&last.mapping, &mapping) && last_lsn == lsn {
                last.changes.push(change);
                return;
            }
        }
        self.batches.push(TableBatch::new(mapping, vec![change]));
        self.lsns.push(lsn);
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether the changes must be written before more are read: [`ROW_BATCH`] rows, or
    /// [`MAX_BATCH_BYTES`] of values (memory stays bounded with large values too).
    fn full(&self) -> bool {
        self.rows >= ROW_BATCH || self.bytes >= MAX_BATCH_BYTES
    }

    fn take(&mut self) -> (Vec<TableBatch>, Vec<Lsn>) {
        self.rows = 0;
        self.bytes = 0;
        (
            std::mem::take(&mut self.batches),
            std::mem::take(&mut self.lsns),
        )
    }

    /// Whether some batch goes through plugins: then the batches may wait for the group's
    /// next transactions, so that one trip to the plugins serves them all.
    fn waits_for_plugins(&self) -> bool {
        self.batches.iter().any(|b| b.mapping.transforms_rows)
    }
}

struct OpenTx {
    final_lsn: Lsn,
    xid: u32,
    skip: bool,
}

/// Runs the CDC loop until shutdown or error.
pub struct Cdc<'a> {
    /// The stream.
    pub stream: &'a mut ReplicationStream,
    /// The destination apply connection.
    pub sink: &'a mut Sink,
    /// Mapping cache.
    pub relations: &'a mut Relations,
    /// Plugins.
    pub transform: SharedTransform,
    /// A source SQL connection, to resolve types of new columns.
    pub source: &'a Client,
    /// End LSN of the last transaction committed on the destination.
    pub durable: Lsn,
    /// Per relation: changes of transactions committed before this position are already in
    /// the table's copy and are skipped.
    pub sync: HashMap<u32, Lsn>,
    /// Shutdown signal.
    pub shutdown: watch::Receiver<bool>,
    /// Connector state, polled for operator requests between transactions.
    pub state: Arc<StateStore>,
    /// Validated plugin chains from the reloader, swapped in between transactions.
    pub reloads: Option<mpsc::Receiver<Prepared>>,
    /// After [`Stopped::Restart`]: the config and chain to start again with.
    pub restart_with: Option<Prepared>,
}

impl Cdc<'_> {
    /// Streams and applies changes until shutdown or a resync request (Ok) or an error.
    pub async fn run(&mut self) -> Result<Stopped, CdcError> {
        let result = self.run_inner().await;
        if result.is_err() {
            self.sink.rollback().await;
        }
        result
    }

    async fn run_inner(&mut self) -> Result<Stopped, CdcError> {
        let mut tx: Option<OpenTx> = None;
        let mut pending = Pending::default();
        let mut needs_ddl_check: HashSet<u32> = HashSet::new();
        let mut acked = self.durable;
        let mut group: Option<Group> = None;
        let mut poll = tokio::time::interval(REQUEST_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut committed = self.sink.committed();
        // End LSN of the last commit handed to the writer.
        let mut queued = Lsn::ZERO;
        loop {
            let idle = tx.is_none() && !self.unwritten(&pending);
            let group_deadline = group.as_ref().map(|g| g.started + MAX_GROUP_DELAY);
            let event = tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    if tx.is_some() {
                        tracing::info!("shutdown in the middle of a transaction: rolling it back");
                    }
                    // Queued commits still land; only the open transaction is dropped.
                    self.sink.rollback().await;
                    self.acknowledge_committed();
                    return Ok(Stopped::Shutdown);
                }
                Ok(()) = committed.changed() => {
                    let lsn = *committed.borrow_and_update();
                    if lsn > acked {
                        self.stream.acknowledge(lsn);
                        acked = lsn;
                    }
                    // The writer is free: the waiting group commits.
                    if tx.is_none() && lsn >= queued {
                        self.commit_group(&mut group, &mut queued, &mut pending).await?;
                    }
                    continue;
                }
                _ = sleep_until(group_deadline), if tx.is_none() && group.is_some() => {
                    self.commit_group(&mut group, &mut queued, &mut pending).await?;
                    continue;
                }
                Some(prepared) = next_reload(&mut self.reloads), if idle => {
                    self.settle().await?;
                    if let Some(stop) = self.swap(prepared).await? {
                        return Ok(stop);
                    }
                    continue;
                }
                _ = poll.tick(), if idle => {
                    match self.state.take_request().await?.as_deref() {
                        Some("stop") => {
                            self.settle().await?;
                            return Ok(Stopped::Shutdown);
                        }
                        Some("resync") => {
                            self.settle().await?;
                            return Ok(Stopped::Resync);
                        }
                        Some("pause") => {
                            self.settle().await?;
                            if self.pause().await? {
                                return Ok(Stopped::Shutdown);
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                ev = self.stream.next() => ev?,
            };
            let Some(event) = event else {
                return Err(CdcError::Ended);
            };
            match event {
                StreamEvent::Begin { final_lsn, xid, .. } => {
                    let skip = final_lsn < self.durable;
                    if skip {
                        tracing::debug!(%final_lsn, xid, "skipping a transaction applied before");
                    }
                    tx = Some(OpenTx {
                        final_lsn,
                        xid,
                        skip,
                    });
                }
                StreamEvent::Commit {
                    end_lsn,
                    commit_time,
                    ..
                } => {
                    let open = tx.take();
                    if !pending.waits_for_plugins() {
                        self.flush(&mut pending).await?;
                    }
                    if self.unwritten(&pending) {
                        let progress = Progress {
                            lsn: end_lsn,
                            xid: open.as_ref().map_or(0, |t| t.xid),
                            commit_time,
                        };
                        self.durable = end_lsn;
                        let g = group.get_or_insert_with(|| Group {
                            started: Instant::now(),
                            transactions: 0,
                            progress,
                        });
                        g.transactions += 1;
                        g.progress = progress;
                        let writer_free = *committed.borrow() >= queued;
                        if writer_free || g.full() || pending.full() {
                            self.commit_group(&mut group, &mut queued, &mut pending)
                                .await?;
                        }
                    }
                    // A transaction with nothing to write is acknowledged at once when every
                    // queued commit has landed and nothing waits to be written (otherwise by
                    // the next commit or keepalive).
                    let caught_up = *committed.borrow() >= queued;
                    if !self.unwritten(&pending) && caught_up && end_lsn > acked {
                        self.stream.acknowledge(end_lsn);
                        acked = end_lsn;
                    }
                }
                StreamEvent::KeepAlive { wal_end } => {
                    let caught_up = *committed.borrow() >= queued;
                    if tx.is_none() && !self.unwritten(&pending) && caught_up && wal_end > acked {
                        self.stream.acknowledge(wal_end);
                        acked = wal_end;
                    }
                }
                StreamEvent::Logical { prefix, .. } => {
                    tracing::debug!(prefix, "logical decoding message ignored");
                }
                StreamEvent::Message(message) => {
                    let skip = tx.as_ref().is_some_and(|t| t.skip);
                    // A row change: relation, kind, old and new row.
                    let mut change = None;
                    match message {
                        Message::Relation(rel) => {
                            let oid = rel.oid;
                            // Waiting changes go through the plugins under the mapping they
                            // were read with, before a changed relation is mapped again.
                            self.flush(&mut pending).await?;
                            let mut guard = self.transform.lock().await;
                            let update = self
                                .relations
                                .on_relation(rel, self.source, guard.as_mut())
                                .await?;
                            drop(guard);
                            if let RelationUpdate::Changed { mapping, new_types } = update {
                                tracing::info!(table = %mapping.source.name, "relation changed on the source");
                                if !new_types.is_empty() {
                                    let refs: Vec<_> = new_types.iter().collect();
                                    ddl::ensure_schema_and_types(
                                        self.sink.settled().await?,
                                        &mapping.destination.schema,
                                        &refs,
                                    )
                                    .await
                                    .map_err(|e| {
                                        CdcError::Ddl {
                                            table: mapping.destination.to_string(),
                                            source: match e {
                                                ddl::DdlError::Statement { source, .. } => source,
                                                ddl::DdlError::Incompatible { .. } => {
                                                    unreachable!("not produced")
                                                }
                                            },
                                        }
                                    })?;
                                }
                                self.state.record_mapping(&mapping).await?;
                                needs_ddl_check.insert(oid);
                            }
                        }
                        Message::Type { .. } | Message::Origin { .. } | Message::Boundary(_) => {}
                        Message::Insert { rel, new } => {
                            change = Some((rel, Op::Insert, None, Some(new)));
                        }
                        Message::Update { rel, old, new } => {
                            change = Some((rel, Op::Update, old.map(|(_, row)| row), Some(new)));
                        }
                        Message::Delete { rel, old: (_, old) } => {
                            change = Some((rel, Op::Delete, Some(old), None));
                        }
                        Message::Truncate { rels, .. } => {
                            if !skip {
                                self.flush(&mut pending).await?;
                                let mut tables = Vec::new();
                                for oid in rels {
                                    let m = self.relations.get(oid)?;
                                    if !m.skip && !self.copied_after(oid, tx.as_ref()) {
                                        tables.push(m.destination.clone());
                                    }
                                }
                                self.sink.truncate(&tables).await?;
                            }
                        }
                    }
                    if let Some((rel, op, old, new)) = change.filter(|_| !skip) {
                        self.push(
                            rel,
                            op,
                            old,
                            new,
                            &mut pending,
                            &mut needs_ddl_check,
                            tx.as_ref(),
                        )
                        .await?;
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn push(
        &mut self,
        rel: u32,
        op: Op,
        old: Option<Row>,
        new: Option<Row>,
        pending: &mut Pending,
        needs_ddl_check: &mut HashSet<u32>,
        tx: Option<&OpenTx>,
    ) -> Result<(), CdcError> {
        let mapping = self.relations.get(rel)?.clone();
        if mapping.skip || self.copied_after(rel, tx) {
            return Ok(());
        }
        if needs_ddl_check.remove(&rel) {
            self.flush(pending).await?;
            let existing = ddl::destination_columns(self.sink.settled().await?, &mapping)
                .await
                .map_err(|source| CdcError::Ddl {
                    table: mapping.destination.to_string(),
                    source,
                })?;
            for sql in ddl::add_missing_columns_sql(&mapping, &existing) {
                tracing::info!(table = %mapping.destination, sql, "adding a column on the destination");
                self.sink.execute_ddl(&mapping.destination, &sql).await?;
            }
        }
        if pending.full() {
            self.flush(pending).await?;
        }
        let change = RowChange {
            op,
            old: old.map(|r| mapping.project(r)),
            new: new.map(|r| mapping.project(r)),
        };
        let lsn = tx.map_or(Lsn::ZERO, |t| t.final_lsn);
        pending.push(mapping, change, lsn);
        Ok(())
    }

    /// Commits the waiting group's destination transaction, if any (queued to the writer), and
    /// records its end LSN in `queued`. Changes still waiting for plugins are written first.
    async fn commit_group(
        &mut self,
        group: &mut Option<Group>,
        queued: &mut Lsn,
        pending: &mut Pending,
    ) -> Result<(), CdcError> {
        if let Some(g) = group.take() {
            self.flush(pending).await?;
            self.sink.commit(g.progress, g.transactions).await?;
            *queued = g.progress.lsn;
        }
        Ok(())
    }

    /// Waits until every queued destination transaction has committed and acknowledges it.
    async fn settle(&mut self) -> Result<(), CdcError> {
        self.sink.drain().await?;
        self.acknowledge_committed();
        Ok(())
    }

    /// Acknowledges what the destination has committed.
    fn acknowledge_committed(&self) {
        let lsn = *self.sink.committed().borrow();
        if lsn > Lsn::ZERO {
            self.stream.acknowledge(lsn);
        }
    }

    /// Swaps in a validated plugin chain: remaps every relation, brings destination tables in
    /// line (ALTER TABLE), and marks for a fresh copy the tables that cannot follow in place.
    async fn swap(&mut self, prepared: Prepared) -> Result<Option<Stopped>, CdcError> {
        if prepared.restart {
            tracing::info!(
                "the config now selects other tables: restarting the connector in-process"
            );
            self.restart_with = Some(prepared);
            return Ok(Some(Stopped::Restart));
        }
        let started = Instant::now();
        let mut transform = prepared.transform;
        let changed = self.relations.remap(transform.as_mut())?;
        let mut recopy = Vec::new();
        for (old, new) in &changed {
            let change = ddl::mapping_change(old, new);
            if change.needs_copy {
                recopy.push(new.clone());
            } else if !change.statements.is_empty() {
                match self
                    .sink
                    .run_ddl(&new.destination, &change.statements)
                    .await
                {
                    Ok(()) => tracing::info!(
                        table = %new.destination,
                        statements = ?change.statements,
                        "destination table follows the new mapping"
                    ),
                    Err(e) => {
                        tracing::warn!(
                            table = %old.destination,
                            error = %crate::error_chain::one_line(&e),
                            "the mapping change cannot be applied in place; the table is copied again"
                        );
                        let drop = format!("DROP TABLE IF EXISTS {}", old.destination.quoted());
                        self.sink.run_ddl(&old.destination, &[drop]).await?;
                        recopy.push(new.clone());
                    }
                }
            }
            self.state.record_mapping(new).await?;
        }
        *self.transform.lock().await = transform;
        self.state
            .record_plugins(&reload::loaded_plugins(&prepared.fingerprint), true)
            .await?;
        tracing::info!(
            plugins = ?prepared.fingerprint.plugins,
            changed_tables = changed.len(),
            swap_ms = started.elapsed().as_millis() as u64,
            "plugin chain swapped in"
        );
        if recopy.is_empty() {
            return Ok(None);
        }
        let pairs: Vec<(String, String)> = recopy
            .iter()
            .map(|m| (m.source.name.to_string(), m.destination.to_string()))
            .collect();
        self.state.plan_copies(&pairs).await?;
        Ok(Some(Stopped::Resync))
    }

    /// Waits while paused; returns whether a stop was requested (false: resumed). The
    /// transport keeps answering the server's keepalives meanwhile.
    async fn pause(&mut self) -> Result<bool, CdcError> {
        tracing::info!("paused");
        self.state.set(None, "paused", None).await?;
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return Ok(true),
                _ = tokio::time::sleep(REQUEST_POLL) => {
                    match self.state.take_request().await?.as_deref() {
                        Some("stop") => return Ok(true),
                        Some("resume") => {
                            tracing::info!("resumed");
                            self.state.set(None, "polling", None).await?;
                            return Ok(false);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Whether changes are read but not committed: the destination transaction is open, or
    /// changes wait for the row step.
    fn unwritten(&self, pending: &Pending) -> bool {
        self.sink.in_transaction() || !pending.is_empty()
    }

    /// Whether the table's copy already contains this transaction's changes.
    fn copied_after(&self, rel: u32, tx: Option<&OpenTx>) -> bool {
        match (self.sync.get(&rel), tx) {
            (Some(sync), Some(tx)) => tx.final_lsn < *sync,
            _ => false,
        }
    }

    /// Writes the pending changes: the batches that plugins change go through the row step
    /// together, then every batch is applied in source order.
    async fn flush(&mut self, pending: &mut Pending) -> Result<(), CdcError> {
        let (mut batches, lsns) = pending.take();
        if batches.iter().any(|b| b.mapping.transforms_rows) {
            batches = start_row_step(&self.transform, batches).finish().await?;
        }
        for (batch, lsn) in batches.into_iter().zip(lsns) {
            let TableBatch {
                mapping,
                changes,
                outcome,
            } = batch;
            if mapping.transforms_rows {
                self.sink.begin().await?;
                let lsn = lsn.to_string();
                self.sink
                    .dead_letter(&mapping.source.name, &lsn, &outcome.dead_letters)
                    .await?;
                self.sink.counts.skipped += outcome.skipped as i64;
            }
            self.sink.apply(&mapping, changes).await?;
        }
        Ok(())
    }
}
