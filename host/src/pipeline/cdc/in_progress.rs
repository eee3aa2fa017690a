//! Large source transactions applied while they run. With `streaming` on, the source sends a
//! transaction that outgrows its `logical_decoding_work_mem` in blocks before it commits. Each
//! such transaction is applied as its blocks arrive on a destination connection of its own,
//! inside one destination transaction (a savepoint per subtransaction, rolled back when the
//! subtransaction aborts), and committed with its progress when its commit arrives, after every
//! transaction that committed before it. Anything this path does not follow (a table's columns
//! changing inside it, source DDL, TRUNCATE, row plugins, a table being copied, a lost
//! connection) ends it with [`CdcError::InProgress`]: the connector then starts again from
//! what the destination holds, with such transactions sent whole after their commit.

use std::collections::HashMap;
use std::time::Instant;

use super::flow::{Flow, Pending};
use super::{Cdc, CdcError};
use crate::config::{ConnectionSettings, OnApplyError};
use crate::model::{Lsn, Op, Provenance, Row};
use crate::pipeline::streaming::AbortOnDrop;
use crate::sink::in_progress::{watch_locks, Blockers};
use crate::sink::{ApplyError, Sink};
use crate::source::pgoutput::Message;
use crate::state::{Progress, TxCounts};
use crate::transform::TableBatch;

/// In-progress transactions applied at the same time, at most (a connection each).
const MAX_OPEN: usize = 4;

/// How destination connections for in-progress transactions are opened: as the main one.
pub struct SideConnections {
    /// The destination.
    pub settings: ConnectionSettings,
    /// The connector's name.
    pub connector: String,
    /// What happens to a row the destination refuses.
    pub on_apply_error: OnApplyError,
    /// Commit with `synchronous_commit = off`.
    pub async_commit: bool,
    /// As [`Sink::reorder_tables`] of the main connection.
    pub reorder_tables: bool,
    /// Several apply lanes: a commit also settles their positions (all of them committed
    /// everything before it).
    pub settles_lanes: bool,
}

impl SideConnections {
    async fn open(&self) -> Result<Sink, CdcError> {
        let client = self
            .settings
            .connect("pgmorph apply in-progress")
            .await
            .map_err(|e| give_up(format!("connecting to the destination: {e}")))?;
        Sink::prepare_session(&client, self.async_commit).await;
        let mut sink = Sink::open(client, &self.connector, self.on_apply_error)
            .await
            .map_err(side_err)?;
        sink.reorder_tables = self.reorder_tables;
        sink.settles_lanes = self.settles_lanes;
        Ok(sink)
    }
}

/// One in-progress transaction being applied.
struct Open {
    sink: Sink,
    pid: i32,
    pending: Pending,
    /// Subtransactions seen, in order, with the counters before their first change.
    savepoints: Vec<(u32, TxCounts)>,
    changes: u64,
    started: Instant,
}

/// The in-progress transactions being applied, and the lock watch while there are any.
pub struct InProgress {
    side: Option<SideConnections>,
    /// The apply connections' backends.
    apply_pids: Vec<i32>,
    open: HashMap<u32, Open>,
    /// The transaction whose block is open.
    block: Option<u32>,
    blockers: Blockers,
    watch: Option<AbortOnDrop>,
}

impl InProgress {
    /// In-progress transactions opened with `side` (`None`: the stream sends none), watched
    /// against the apply backends `apply_pids`.
    pub fn new(side: Option<SideConnections>, apply_pids: Vec<i32>) -> Self {
        Self {
            side,
            apply_pids,
            open: HashMap::new(),
            block: None,
            blockers: Blockers::default(),
            watch: None,
        }
    }

    /// Whether an in-progress transaction is being applied.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Rolls back every in-progress transaction (a later block of one ends streaming them).
    pub async fn abandon(&mut self) {
        for (_, mut tx) in self.open.drain() {
            tx.sink.rollback().await;
        }
        self.block = None;
        self.set_blockers();
    }

    fn set_blockers(&self) {
        if let Ok(mut b) = self.blockers.lock() {
            *b = self.open.values().map(|t| t.pid).collect();
        }
    }

    async fn start(&mut self, xid: u32) -> Result<(), CdcError> {
        if self.open.len() >= MAX_OPEN {
            return Err(give_up(format!(
                "more than {MAX_OPEN} large transactions run at once"
            )));
        }
        let side = self
            .side
            .as_ref()
            .ok_or_else(|| give_up("the stream sent one without being asked".into()))?;
        let mut sink = side.open().await?;
        sink.begin().await.map_err(side_err)?;
        let pid = sink.backend_pid().await.map_err(side_err)?;
        if self.watch.is_none() {
            let client = side
                .settings
                .connect("pgmorph lock watch")
                .await
                .map_err(|e| give_up(format!("connecting to the destination: {e}")))?;
            let task = watch_locks(client, self.apply_pids.clone(), self.blockers.clone());
            self.watch = Some(AbortOnDrop(tokio::spawn(task)));
        }
        let tx = Open {
            sink,
            pid,
            pending: Pending::default(),
            savepoints: Vec::new(),
            changes: 0,
            started: Instant::now(),
        };
        self.open.insert(xid, tx);
        self.set_blockers();
        tracing::info!(xid, "applying a large source transaction while it runs");
        Ok(())
    }

    fn current(&mut self) -> Result<&mut Open, CdcError> {
        let xid = self
            .block
            .ok_or_else(|| give_up("a change outside a stream block".into()))?;
        self.open.get_mut(&xid).ok_or_else(|| {
            give_up(format!(
                "a block of transaction {xid}, whose earlier blocks were not applied here"
            ))
        })
    }

    fn take(&mut self, xid: u32) -> Option<Open> {
        let tx = self.open.remove(&xid);
        self.set_blockers();
        tx
    }
}

impl Open {
    /// Sends the gathered changes to the destination.
    async fn flush(&mut self) -> Result<(), CdcError> {
        let (batches, _) = self.pending.take();
        for batch in batches {
            let TableBatch {
                mapping, changes, ..
            } = batch;
            self.sink
                .apply(&mapping, changes, Lsn::ZERO)
                .await
                .map_err(side_err)?;
        }
        Ok(())
    }
}

/// The in-progress path cannot follow: the connector starts again with whole transactions.
fn give_up(reason: String) -> CdcError {
    CdcError::InProgress(reason)
}

fn side_err(e: ApplyError) -> CdcError {
    give_up(format!("applying it: {}", crate::error_chain::one_line(&e)))
}

impl Cdc<'_> {
    /// A block of an in-progress transaction begins; its first opens a destination transaction.
    pub(super) async fn on_stream_start(&mut self, xid: u32, first: bool) -> Result<(), CdcError> {
        tracing::debug!(xid, first, "stream start");
        if first {
            self.in_progress.start(xid).await?;
        }
        self.in_progress.block = Some(xid);
        Ok(())
    }

    /// The block ends: what it brought goes to the destination.
    pub(super) async fn on_stream_stop(&mut self) -> Result<(), CdcError> {
        let tx = self.in_progress.current()?;
        tx.flush().await?;
        tx.sink.flush().await.map_err(side_err)?;
        self.in_progress.block = None;
        Ok(())
    }

    /// A message of the open block, from (sub)transaction `sub`.
    pub(super) async fn on_streamed(&mut self, sub: u32, message: Message) -> Result<(), CdcError> {
        let (rel, op, old, new) = match message {
            Message::Relation(rel) if self.relations.is_unchanged(&rel) => return Ok(()),
            Message::Relation(rel) => {
                return Err(give_up(format!(
                    "table {}.{} changes inside it",
                    rel.schema, rel.name
                )))
            }
            Message::Truncate { .. } => return Err(give_up("it truncates a table".into())),
            Message::LogicalMessage { prefix, .. }
                if prefix == crate::source::ddl_trigger::MESSAGE_PREFIX =>
            {
                return Err(give_up("it runs source DDL".into()))
            }
            Message::Insert { rel, new } => (rel, Op::Insert, None, Some(new)),
            Message::Update { rel, old, new } => {
                (rel, Op::Update, old.map(|(_, row)| row), Some(new))
            }
            Message::Delete { rel, old: (_, old) } => (rel, Op::Delete, Some(old), None),
            _ => return Ok(()),
        };
        self.push_streamed(sub, rel, op, old, new).await
    }

    async fn push_streamed(
        &mut self,
        sub: u32,
        rel: u32,
        op: Op,
        old: Option<Row>,
        new: Option<Row>,
    ) -> Result<(), CdcError> {
        let mapping = self.relations.get(rel)?.clone();
        if mapping.skip {
            return Ok(());
        }
        if mapping.transforms_rows {
            return Err(give_up(format!(
                "row plugins of {} run once it commits (they read its commit time and position)",
                mapping.source.name
            )));
        }
        if self.sync.get(&rel).is_some_and(|sync| *sync > self.durable) {
            return Err(give_up(format!("{} is being copied", mapping.source.name)));
        }
        let change = mapping.project_change(op, old, new);
        self.text_values_check(&mapping, std::slice::from_ref(&change))?;
        let top = self.in_progress.block;
        let tx = self.in_progress.current()?;
        if Some(sub) != top && !tx.savepoints.iter().any(|(x, _)| *x == sub) {
            tx.flush().await?;
            tx.savepoints.push((sub, tx.sink.counts));
            tx.sink.savepoint(sub).await.map_err(side_err)?;
        }
        tx.pending
            .push(mapping, change, Lsn::ZERO, Provenance::default());
        tx.changes += 1;
        if tx.pending.full() {
            tx.flush().await?;
        }
        Ok(())
    }

    /// A streamed transaction or one of its subtransactions aborted: its changes are undone.
    pub(super) async fn on_stream_abort(&mut self, xid: u32, subxid: u32) -> Result<(), CdcError> {
        tracing::debug!(xid, subxid, "stream abort");
        if subxid == xid {
            if let Some(mut tx) = self.in_progress.take(xid) {
                tx.sink.rollback().await;
                crate::metrics::large_transaction("aborted");
                tracing::info!(xid, "a large source transaction rolled back");
            }
            return Ok(());
        }
        let Some(tx) = self.in_progress.open.get_mut(&xid) else {
            return Ok(());
        };
        // A subtransaction with no savepoint here changed nothing (each gets one at its first
        // change); the changes gathered are all after the latest savepoint.
        let Some(i) = tx.savepoints.iter().position(|(x, _)| *x == subxid) else {
            return Ok(());
        };
        tx.pending.take();
        tx.sink.counts = tx.savepoints[i].1;
        tx.savepoints.truncate(i + 1);
        tx.sink
            .rollback_to_savepoint(subxid)
            .await
            .map_err(side_err)
    }

    /// A streamed transaction commits: after every transaction that committed before it, with
    /// its progress, then acknowledged once durable.
    pub(super) async fn on_stream_commit(
        &mut self,
        f: &mut Flow,
        xid: u32,
        end_lsn: Lsn,
        commit_time: i64,
    ) -> Result<(), CdcError> {
        tracing::debug!(xid, %end_lsn, durable = %self.durable, "stream commit");
        let applied_before = end_lsn <= self.durable;
        let Some(mut tx) = self.in_progress.take(xid) else {
            return match applied_before {
                true => Ok(()),
                false => Err(give_up(format!(
                    "transaction {xid} committed, and its first blocks were not applied here"
                ))),
            };
        };
        if applied_before {
            tx.sink.rollback().await;
            return Ok(());
        }
        tx.flush().await?;
        self.commit_group(f).await?;
        self.sink.drain().await?;
        let progress = Progress {
            lsn: end_lsn,
            xid,
            commit_time,
        };
        tx.sink.commit(progress, 1).await.map_err(side_err)?;
        tx.sink.drain().await.map_err(side_err)?;
        let mut durable = tx.sink.durable();
        durable
            .wait_for(|lsn| *lsn >= end_lsn)
            .await
            .map_err(|_| give_up("its connection closed at the commit".into()))?;
        self.durable = end_lsn;
        self.last_progress = progress;
        self.acknowledge(f, end_lsn);
        crate::metrics::large_transaction("committed");
        tracing::info!(
            xid,
            changes = tx.changes,
            applied_for_ms = tx.started.elapsed().as_millis() as u64,
            "large source transaction committed"
        );
        Ok(())
    }
}
