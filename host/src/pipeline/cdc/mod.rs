//! The CDC loop: one source transaction at a time, applied as one destination transaction,
//! acknowledged only after the destination committed it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

mod flow;
mod in_progress;
mod new_table;
pub mod row_pool;
mod source_ddl;

use flow::{Flow, Group, OpenTx, Pending, MAX_GROUP_DELAY};
pub use in_progress::{InProgress, SideConnections};

use super::relations::{RelationError, RelationUpdate, Relations};
use crate::model::{Lsn, Op, Provenance, Row, RowChange, TableMapping, TableName};
use crate::plugin::reload::{self, Prepared};
use crate::sink::{ddl, ApplyError, Lanes};
use crate::source::pgoutput::Message;
use crate::source::stream::{ReplicationStream, StreamError, StreamEvent};
use crate::state::{Progress, StateStore};
use crate::transform::{RowStepError, SharedTransform, TableBatch};

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

/// The CDC loop stopped with an error; the open transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The replication stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The destination refused a change of the source transactions up to `lsn` (none of them
    /// was acknowledged; a restart applies them again once the cause is fixed).
    #[error(
        "{source} (in the source transactions up to {lsn}: nothing from them was acknowledged, \
         a start after the cause is fixed applies them)"
    )]
    Refused {
        /// The destination's refusal.
        source: ApplyError,
        /// End LSN of the last source transaction handed to the destination.
        lsn: Lsn,
    },
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
    /// A large transaction sent while it runs cannot be applied that way (see
    /// [`in_progress`]); nothing of it was committed.
    #[error("a large source transaction cannot be applied while it runs: {0}")]
    InProgress(String),
    /// A value arrived in binary form for a table whose values must be text (the reason).
    #[error("values must travel as text: {0}")]
    TextValues(String),
}

/// Why the loop returned without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Shutdown was requested (signal or `pgmorph stop`).
    Shutdown,
    /// `pgmorph resync` asked for tables to be copied again; the stream is between transactions.
    Resync,
    /// The reloaded config replicates other tables; [`Cdc::restart_with`] holds it.
    Restart,
    /// A large transaction sent while it runs could not be applied that way (the reason):
    /// start again from the destination's position, with transactions sent whole.
    WholeTransactions(String),
    /// A change that must run on one apply connection came after changes of its destination
    /// transaction went to others (see [`Lanes::one_lane`]): start again from the
    /// destination's position, on one connection until past the source transaction
    /// committed at this position.
    OneLane(Lsn),
    /// A change of a table whose values must be text came in binary form (the reason): start
    /// again from the destination's position, with text values.
    TextValues(String),
}

/// Runs the CDC loop until shutdown or error.
pub struct Cdc<'a> {
    /// The stream.
    pub stream: &'a mut ReplicationStream,
    /// The destination apply connections.
    pub sink: &'a mut Lanes,
    /// Mapping cache.
    pub relations: &'a mut Relations,
    /// Plugins.
    pub transform: SharedTransform,
    /// A source SQL connection, to resolve types of new columns.
    pub source: &'a Client,
    /// End LSN of the last transaction committed on the destination.
    pub durable: Lsn,
    /// Commit LSN of the source transaction read last (named when the destination refuses
    /// one of its changes).
    pub reading: Lsn,
    /// Progress of the last source transaction applied (its position is the stored one's
    /// when nothing was applied since the start).
    pub last_progress: Progress,
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
    /// Large transactions applied while they run.
    pub in_progress: InProgress,
    /// The row step's plugin instances (one set per apply connection).
    pub row_pool: row_pool::RowPool,
    /// Destination tables whose values must cross as text although their mapping allows binary
    /// ([`ddl::other_typed_tables`], and tables whose source DDL was skipped).
    pub text_tables: HashSet<TableName>,
}

impl Cdc<'_> {
    /// Streams and applies changes until shutdown or a resync request (Ok) or an error.
    pub async fn run(&mut self) -> Result<Stopped, CdcError> {
        let result = self.run_inner().await;
        if result.is_err() {
            self.sink.rollback().await;
        }
        let streaming = !self.in_progress.is_empty();
        self.in_progress.abandon().await;
        let result = match result {
            Err(CdcError::Apply(ApplyError::Spread { what })) => {
                tracing::info!(
                    change = what,
                    "starting again on one apply connection until past this transaction"
                );
                return Ok(Stopped::OneLane(self.reading));
            }
            Err(CdcError::InProgress(reason)) => return Ok(Stopped::WholeTransactions(reason)),
            Err(CdcError::TextValues(reason)) => return Ok(Stopped::TextValues(reason)),
            // With a large transaction open, the error may be its doing (a lock it held).
            Err(e) if streaming => {
                let reason = format!(
                    "an error while one was open: {}",
                    crate::error_chain::one_line(&e)
                );
                return Ok(Stopped::WholeTransactions(reason));
            }
            other => other,
        };
        result.map_err(|e| match e {
            CdcError::Apply(source) => CdcError::Refused {
                source,
                lsn: self.reading.max(self.durable),
            },
            other => other,
        })
    }

    async fn run_inner(&mut self) -> Result<Stopped, CdcError> {
        let mut f = Flow::new(self.durable);
        let mut poll = tokio::time::interval(REQUEST_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut committed = self.sink.committed();
        let mut durable = self.sink.durable();
        let mut failed = self.sink.failed();
        loop {
            let idle = f.tx.is_none() && !self.unwritten(&f.pending);
            let group_deadline = f.group.as_ref().map(|g| g.started + MAX_GROUP_DELAY);
            let writer_free = *committed.borrow() >= f.queued;
            let position_due =
                idle && writer_free && f.position.target > self.durable.max(f.queued);
            let event = tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Ok(self.shut_down(&f).await),
                Ok(()) = durable.changed() => {
                    let lsn = *durable.borrow_and_update();
                    self.acknowledge(&mut f, lsn);
                    continue;
                }
                // Queued work failed: stop now, even if the source sends nothing more.
                Ok(()) = failed.changed(), if *failed.borrow() => {
                    self.sink.drain().await?;
                    continue;
                }
                Ok(()) = committed.changed() => {
                    let lsn = *committed.borrow_and_update();
                    // The writer is free: the waiting group commits.
                    if f.tx.is_none() && lsn >= f.queued {
                        self.commit_group(&mut f).await?;
                    }
                    continue;
                }
                _ = sleep_until(group_deadline), if f.tx.is_none() && f.group.is_some() => {
                    self.commit_group(&mut f).await?;
                    continue;
                }
                _ = sleep_until(f.position.due()), if position_due => {
                    self.write_position(&mut f).await?;
                    continue;
                }
                Some(prepared) = next_reload(&mut self.reloads), if idle && self.in_progress.is_empty() => {
                    self.settle().await?;
                    match self.swap(prepared).await? {
                        Some(stop) => return Ok(stop),
                        None => continue,
                    }
                }
                _ = poll.tick(), if idle => match self.on_request().await? {
                    Some(stop) => return Ok(stop),
                    None => continue,
                },
                ev = self.stream.next() => ev?,
            };
            let Some(event) = event else {
                return Err(CdcError::Ended);
            };
            self.on_event(&mut f, event, &committed).await?;
        }
    }

    /// Shutdown: queued commits still land; only the open transaction is dropped.
    async fn shut_down(&mut self, f: &Flow) -> Stopped {
        if f.tx.is_some() {
            tracing::info!("shutdown in the middle of a transaction: rolling it back");
        }
        self.sink.rollback().await;
        self.acknowledge_committed();
        Stopped::Shutdown
    }

    /// Acknowledges a position the destination made durable.
    fn acknowledge(&mut self, f: &mut Flow, lsn: Lsn) {
        if lsn > f.acked {
            self.stream.acknowledge(lsn);
            f.acked = lsn;
        }
    }

    /// Writes the idle position to the progress row; it is acknowledged once durable.
    async fn write_position(&mut self, f: &mut Flow) -> Result<(), CdcError> {
        let progress = Progress {
            lsn: f.position.target,
            ..self.last_progress
        };
        self.sink.record_position(progress).await?;
        self.durable = progress.lsn;
        f.queued = progress.lsn;
        f.position.written_at = Some(Instant::now());
        Ok(())
    }

    /// Acts on an operator request (between transactions); returns how to stop, if asked to.
    async fn on_request(&mut self) -> Result<Option<Stopped>, CdcError> {
        let stop = match self.state.take_request().await?.as_deref() {
            Some("stop") => Some(Stopped::Shutdown),
            Some("resync") => Some(Stopped::Resync),
            Some("pause") => {
                self.settle().await?;
                return Ok(self.pause().await?.then_some(Stopped::Shutdown));
            }
            _ => None,
        };
        if stop.is_some() {
            self.settle().await?;
        }
        Ok(stop)
    }

    async fn on_event(
        &mut self,
        f: &mut Flow,
        event: StreamEvent,
        committed: &watch::Receiver<Lsn>,
    ) -> Result<(), CdcError> {
        match event {
            StreamEvent::Begin {
                final_lsn,
                xid,
                commit_time,
            } => {
                let skip = final_lsn < self.durable;
                if skip {
                    tracing::debug!(%final_lsn, xid, "skipping a transaction applied before");
                }
                self.reading = final_lsn;
                f.tx = Some(OpenTx {
                    final_lsn,
                    xid,
                    skip,
                    commit_time,
                    changes: 0,
                });
            }
            StreamEvent::Commit {
                end_lsn,
                commit_time,
                ..
            } => self.on_commit(f, end_lsn, commit_time, committed).await?,
            StreamEvent::KeepAlive { wal_end } => {
                if f.tx.is_none() {
                    f.position.saw(wal_end);
                }
            }
            StreamEvent::Logical { prefix, content } => {
                if prefix == crate::source::ddl_trigger::MESSAGE_PREFIX
                    && f.tx.as_ref().is_some_and(|t| !t.skip)
                {
                    self.on_source_ddl(f, &content).await?;
                } else {
                    tracing::debug!(prefix, "logical decoding message ignored");
                }
            }
            StreamEvent::Message(message) => {
                if !f.tx.as_ref().is_some_and(|t| t.skip) {
                    self.on_message(f, message).await?;
                }
            }
            StreamEvent::StreamStart { xid, first } => self.on_stream_start(xid, first).await?,
            StreamEvent::Streamed { xid, message } => self.on_streamed(xid, message).await?,
            StreamEvent::StreamStop => self.on_stream_stop().await?,
            StreamEvent::StreamAbort { xid, subxid } => self.on_stream_abort(xid, subxid).await?,
            StreamEvent::StreamCommit {
                xid,
                end_lsn,
                commit_time,
            } => self.on_stream_commit(f, xid, end_lsn, commit_time).await?,
        }
        Ok(())
    }

    /// A source commit: the transaction joins the group commit (which commits at once when
    /// the writer is free), or, with nothing to write, its position waits to be recorded.
    async fn on_commit(
        &mut self,
        f: &mut Flow,
        end_lsn: Lsn,
        commit_time: i64,
        committed: &watch::Receiver<Lsn>,
    ) -> Result<(), CdcError> {
        let open = f.tx.take();
        if !f.pending.waits_for_plugins() {
            self.flush(&mut f.pending).await?;
        }
        if self.unwritten(&f.pending) {
            let progress = Progress {
                lsn: end_lsn,
                xid: open.as_ref().map_or(0, |t| t.xid),
                commit_time,
            };
            self.durable = end_lsn;
            self.last_progress = progress;
            let g = f.group.get_or_insert_with(|| Group {
                started: Instant::now(),
                transactions: 0,
                progress,
            });
            g.transactions += 1;
            g.progress = progress;
            let writer_free = *committed.borrow() >= f.queued;
            if writer_free || g.full() || f.pending.full() {
                self.commit_group(f).await?;
            }
        }
        // A transaction with nothing to write: its position is written (and then
        // acknowledged) once everything before it is.
        if !self.unwritten(&f.pending) {
            f.position.saw(end_lsn);
        }
        Ok(())
    }

    /// A message inside a transaction that is not skipped.
    async fn on_message(&mut self, f: &mut Flow, message: Message) -> Result<(), CdcError> {
        let (rel, op, old, new) = match message {
            Message::Relation(rel) => return self.on_relation(f, rel).await,
            Message::Truncate { rels, .. } => return self.on_truncate(f, rels).await,
            Message::Type { .. }
            | Message::Origin { .. }
            | Message::Begin { .. }
            | Message::Commit { .. }
            | Message::LogicalMessage { .. }
            | Message::StreamStart { .. }
            | Message::StreamStop
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => return Ok(()),
            Message::Insert { rel, new } => (rel, Op::Insert, None, Some(new)),
            Message::Update { rel, old, new } => {
                (rel, Op::Update, old.map(|(_, row)| row), Some(new))
            }
            Message::Delete { rel, old: (_, old) } => (rel, Op::Delete, Some(old), None),
        };
        self.push(f, rel, op, old, new).await
    }

    /// A relation description: the table is mapped again if it changed (waiting changes go
    /// through the plugins first, under the mapping they were read with), and new user types
    /// are created on the destination.
    async fn on_relation(
        &mut self,
        f: &mut Flow,
        rel: crate::source::pgoutput::Relation,
    ) -> Result<(), CdcError> {
        let oid = rel.oid;
        self.flush(&mut f.pending).await?;
        let mut guard = self.transform.lock().await;
        let update = self
            .relations
            .on_relation(rel, self.source, guard.as_mut())
            .await?;
        drop(guard);
        let RelationUpdate::Changed { mapping, new_types } = update else {
            return Ok(());
        };
        tracing::info!(table = %mapping.source.name, "relation changed on the source");
        self.before_one_lane(f).await?;
        self.sink.one_lane("a changed source table").await?;
        self.sink.stop_spreading(&mapping.destination);
        if !new_types.is_empty() {
            let refs: Vec<_> = new_types.iter().collect();
            let dest = self.sink.settled().await?;
            ddl::ensure_schema_and_types(dest, &mapping.destination.schema, &refs)
                .await
                .map_err(|e| CdcError::Ddl {
                    table: mapping.destination.to_string(),
                    source: match e {
                        ddl::DdlError::Statement { source, .. } => source,
                        ddl::DdlError::Incompatible { .. } => unreachable!("not produced"),
                    },
                })?;
        }
        self.state.record_mapping(&mapping).await?;
        f.needs_ddl_check.insert(oid);
        Ok(())
    }

    /// TRUNCATE of the tables that are replicated and not copied after this transaction.
    async fn on_truncate(&mut self, f: &mut Flow, rels: Vec<u32>) -> Result<(), CdcError> {
        self.flush(&mut f.pending).await?;
        let mut tables = Vec::new();
        for oid in rels {
            let m = self.relations.get(oid)?;
            if !m.skip && !self.copied_after(oid, f.tx.as_ref()) {
                tables.push(m.destination.clone());
            }
        }
        if !tables.is_empty() {
            self.before_one_lane(f).await?;
        }
        self.sink.truncate(&tables).await?;
        Ok(())
    }

    /// Before a change that runs on one apply lane (see [`Lanes::one_lane`]): when the
    /// source transaction wrote nothing yet, the transactions grouped before it commit first,
    /// so that no other lane holds changes of the open group.
    async fn before_one_lane(&mut self, f: &mut Flow) -> Result<(), CdcError> {
        let first = f.tx.as_ref().is_none_or(|t| t.changes == 0);
        if first && self.sink.spread_open() {
            self.commit_group(f).await?;
        }
        Ok(())
    }

    /// A row change: projected into the mapping's layout and added to the pending batches
    /// (after adding columns the source gained, when its relation changed).
    async fn push(
        &mut self,
        f: &mut Flow,
        rel: u32,
        op: Op,
        old: Option<Row>,
        new: Option<Row>,
    ) -> Result<(), CdcError> {
        let mapping = self.relations.get(rel)?.clone();
        if mapping.skip || self.copied_after(rel, f.tx.as_ref()) {
            return Ok(());
        }
        if f.needs_ddl_check.remove(&rel) {
            self.flush(&mut f.pending).await?;
            self.add_missing_columns(&mapping).await?;
        }
        if f.pending.full() {
            self.flush(&mut f.pending).await?;
        }
        let change = mapping.project_change(op, old, new);
        if self.sink.needs_one_lane(&mapping, &change) {
            self.before_one_lane(f).await?;
            self.sink.one_lane("an update of a key").await?;
        }
        let (lsn, at) = match f.tx.as_mut() {
            Some(tx) => {
                tx.changes += 1;
                let at = Provenance::transaction(tx.final_lsn.0, tx.commit_time);
                (tx.final_lsn, at.at_row(tx.changes - 1))
            }
            None => (Lsn::ZERO, Provenance::default()),
        };
        f.pending.push(mapping, change, lsn, at);
        Ok(())
    }

    /// Fails with [`CdcError::TextValues`] when `changes` of one table hold binary values that
    /// the table cannot take (a row plugin reads them, a column changes type on the way, or the
    /// destination column has another type). Free when the stream sends text.
    pub(super) fn text_values_check(
        &self,
        mapping: &TableMapping,
        changes: &[RowChange],
    ) -> Result<(), CdcError> {
        if !self.stream.sends_binary() || !changes.iter().any(RowChange::has_binary) {
            return Ok(());
        }
        if !mapping.binary_safe() {
            return Err(CdcError::TextValues(format!(
                "{} has row plugins or columns of other types on the destination",
                mapping.source.name
            )));
        }
        if self.text_tables.contains(&mapping.destination) {
            return Err(CdcError::TextValues(format!(
                "destination table {} has columns of other types than the source's",
                mapping.destination
            )));
        }
        Ok(())
    }

    /// Adds the columns the mapping has and the destination table lacks, in the open
    /// transaction.
    async fn add_missing_columns(&mut self, mapping: &TableMapping) -> Result<(), CdcError> {
        let existing = ddl::destination_columns(self.sink.settled().await?, mapping)
            .await
            .map_err(|source| CdcError::Ddl {
                table: mapping.destination.to_string(),
                source,
            })?;
        for sql in ddl::add_missing_columns_sql(mapping, &existing) {
            tracing::info!(table = %mapping.destination, sql, "adding a column on the destination");
            self.sink.execute_ddl(&mapping.destination, &sql).await?;
        }
        Ok(())
    }

    /// Commits the waiting group's destination transaction, if any (queued to the writer), and
    /// records its end LSN as queued. Changes still waiting for plugins are written first.
    async fn commit_group(&mut self, f: &mut Flow) -> Result<(), CdcError> {
        if let Some(g) = f.group.take() {
            self.flush(&mut f.pending).await?;
            self.sink.commit(g.progress, g.transactions).await?;
            f.queued = g.progress.lsn;
        }
        Ok(())
    }

    /// Waits until every queued destination transaction has committed and acknowledges it.
    async fn settle(&mut self) -> Result<(), CdcError> {
        self.sink.drain().await?;
        self.acknowledge_committed();
        Ok(())
    }

    /// Acknowledges what the destination has committed durably.
    fn acknowledge_committed(&self) {
        let lsn = *self.sink.durable().borrow();
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
        // Before any plugin or the destination sees a value: once per batch, not per change.
        for batch in &batches {
            self.text_values_check(&batch.mapping, &batch.changes)?;
        }
        if batches.iter().any(|b| b.mapping.transforms_rows) {
            batches = self.row_pool.run(batches).await?;
        }
        for (batch, lsn) in batches.into_iter().zip(lsns) {
            let TableBatch {
                mapping,
                changes,
                outcome,
                ..
            } = batch;
            if mapping.transforms_rows {
                let main = self.sink.main();
                main.begin().await?;
                main.dead_letter(
                    &mapping.source.name,
                    &lsn.to_string(),
                    &outcome.dead_letters,
                )
                .await?;
                main.counts.skipped += outcome.skipped as i64;
            }
            self.sink.apply(&mapping, changes, lsn).await?;
        }
        Ok(())
    }
}
