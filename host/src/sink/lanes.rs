//! Apply lanes (`apply.parallel = N`): N destination connections, each a [`Sink`] with its own
//! writer, that apply one group commit together.
//!
//! - **Routing.** Changes of a *spread* table (see [`super::ddl::spreadable_tables`]) go to
//!   the lane its key hashes to, so each key's changes keep their order on one connection.
//!   Every other table stays on lane 0, in source order.
//! - **Commit.** A group commits on every lane, each in its own destination transaction with
//!   its own position: lane 0 the connector's progress and counters, lane `i` its row of
//!   `pgmorph.apply_lanes`. A restart resumes from the lowest position, and each lane skips the
//!   changes it already has, so every change is applied exactly once. A reader may see one
//!   lane's part of a group before another's.
//! - **One connection where order across keys matters.** TRUNCATE, DDL and an update that
//!   changes a key run the rest of their group on lane 0, after the other lanes committed;
//!   then lane 0 commits that group before the lanes take the next one. When other lanes
//!   already hold changes of the open group, that cannot be: the call fails with
//!   [`ApplyError::Spread`], nothing of the group is committed, and the connector starts again
//!   from its position, applying on one connection until past that transaction.
//! - **Acknowledging.** What may be acknowledged is the position every lane has made durable
//!   ([`reached`]).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ApplyError, Sink};
use crate::model::{Cell, Lsn, Op, RowChange, TableMapping, TableName};
use crate::state::{Progress, TxCounts};

/// The apply connections of one connector.
pub struct Lanes {
    main: Sink,
    extra: Vec<Sink>,
    /// Destination tables whose changes are spread by key.
    spread: HashSet<TableName>,
    /// Per lane: its changes of source transactions ending before this are applied.
    starts: Vec<Lsn>,
    /// The highest start: later transactions are new to every lane.
    past_starts: Lsn,
    /// Transactions whose commit is at or before this are applied on lane 0 alone.
    one_lane_until: Lsn,
    /// The open group runs on lane 0 alone.
    one_lane: bool,
    /// The last group ran on lane 0 alone: lane 0 commits it before other lanes take changes.
    settle_first: bool,
    /// Per lane: the end LSN of the last commit queued.
    queued: Arc<[AtomicU64]>,
    committed: watch::Receiver<Lsn>,
    durable: watch::Receiver<Lsn>,
    failed: watch::Receiver<bool>,
    merges: Vec<JoinHandle<()>>,
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for task in &self.merges {
            task.abort();
        }
    }
}

/// Where the lanes start: the connector's position and the lanes' own ones (see
/// [`crate::state::StateStore::lane_positions`]), and how far to apply on one connection.
#[derive(Debug, Clone, Default)]
pub struct LaneStart {
    /// The connector's position (lane 0's).
    pub main: Lsn,
    /// Lanes with a position of their own.
    pub lanes: HashMap<u32, Lsn>,
    /// Transactions committed at or before this run on lane 0 alone.
    pub one_lane_until: Lsn,
}

impl Lanes {
    /// Lane 0 is `main`; `extra` are lanes 1.. (opened as `main` was); `spread` the tables
    /// spread by key.
    pub fn new(
        main: Sink,
        mut extra: Vec<Sink>,
        spread: HashSet<TableName>,
        start: LaneStart,
    ) -> Self {
        for (i, lane) in extra.iter_mut().enumerate() {
            lane.set_lane(i as u32 + 1);
        }
        let n = extra.len() + 1;
        let starts: Vec<Lsn> = (0..n as u32)
            .map(|i| match i {
                0 => start.main,
                i => start.lanes.get(&i).copied().unwrap_or(start.main),
            })
            .collect();
        let queued: Arc<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let all: Vec<&Sink> = std::iter::once(&main).chain(&extra).collect();
        let (committed, c) = merge_positions(all.iter().map(|s| s.committed()), &queued);
        let (durable, d) = merge_positions(all.iter().map(|s| s.durable()), &queued);
        let (failed, f) = merge_failed(all.iter().map(|s| s.failed()));
        Self {
            past_starts: starts.iter().copied().max().unwrap_or_default(),
            starts,
            main,
            extra,
            spread,
            one_lane_until: start.one_lane_until,
            one_lane: false,
            settle_first: false,
            queued,
            committed,
            durable,
            failed,
            merges: [c, d, f].into_iter().flatten().collect(),
        }
    }

    /// Lane 0, for what only it does (counters, skipped DDL, the SQL client between
    /// transactions).
    pub fn main(&mut self) -> &mut Sink {
        &mut self.main
    }

    /// Lane 0, read-only.
    pub fn main_ref(&self) -> &Sink {
        &self.main
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.extra.len() + 1
    }

    /// Whether there is only lane 0.
    pub fn is_single(&self) -> bool {
        self.extra.is_empty()
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Sink> {
        std::iter::once(&mut self.main).chain(self.extra.iter_mut())
    }

    /// Applies changes of one table of the source transaction committed at `lsn`.
    pub async fn apply(
        &mut self,
        mapping: &Arc<TableMapping>,
        changes: Vec<RowChange>,
        lsn: Lsn,
    ) -> Result<(), ApplyError> {
        if self.is_single() {
            return self.main.apply(mapping, changes, lsn).await;
        }
        if !self.spread.contains(&mapping.destination) {
            if lsn < self.starts[0] {
                return Ok(());
            }
            return self.main.apply(mapping, changes, lsn).await;
        }
        let key = mapping.key_indexes();
        let n = self.count();
        let lanes: Vec<Option<usize>> = changes.iter().map(|c| lane_of(&key, c, n)).collect();
        if lanes.iter().any(Option::is_none) {
            self.one_lane(&format!("an update of a key of {}", mapping.destination))
                .await?;
        } else if lsn <= self.one_lane_until {
            self.one_lane("a transaction before the restart point")
                .await?;
        }
        let changes = self.unapplied(changes, &lanes, lsn);
        if self.one_lane {
            return self.main.apply(mapping, changes, lsn).await;
        }
        if std::mem::take(&mut self.settle_first) {
            self.main.drain().await?;
        }
        let mut parts: Vec<Vec<RowChange>> = (0..n).map(|_| Vec::new()).collect();
        for (change, lane) in changes.into_iter().zip(lanes) {
            parts[lane.unwrap_or(0)].push(change);
        }
        for (i, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                self.lane(i).apply(mapping, part, lsn).await?;
            }
        }
        Ok(())
    }

    fn lane(&mut self, i: usize) -> &mut Sink {
        match i {
            0 => &mut self.main,
            i => &mut self.extra[i - 1],
        }
    }

    /// The changes their lane has not applied yet (after a restart, lanes may be one group
    /// apart); a changed key counts as lane 0's, which alone applies it.
    fn unapplied(
        &self,
        changes: Vec<RowChange>,
        lanes: &[Option<usize>],
        lsn: Lsn,
    ) -> Vec<RowChange> {
        if lsn >= self.past_starts {
            return changes;
        }
        changes
            .into_iter()
            .zip(lanes)
            .filter(|(_, lane)| lsn >= self.starts[lane.unwrap_or(0)])
            .map(|(c, _)| c)
            .collect()
    }

    /// Runs the rest of the open group on lane 0 alone, once the other lanes committed what
    /// they have; fails when they hold changes of the open group (see the module docs).
    pub async fn one_lane(&mut self, what: &str) -> Result<(), ApplyError> {
        if self.is_single() || self.one_lane {
            return Ok(());
        }
        if self.extra.iter().any(Sink::in_transaction) {
            return Err(ApplyError::Spread {
                what: what.to_string(),
            });
        }
        for lane in &mut self.extra {
            lane.drain().await?;
        }
        self.one_lane = true;
        Ok(())
    }

    /// Whether other lanes than 0 hold changes of the open group.
    pub fn spread_open(&self) -> bool {
        !self.one_lane && self.extra.iter().any(Sink::in_transaction)
    }

    /// Commits the open group: on lane 0 alone after [`Self::one_lane`], else on every lane
    /// with its own position (lane 0 last, with every lane's counters).
    pub async fn commit(
        &mut self,
        progress: Progress,
        transactions: i64,
    ) -> Result<(), ApplyError> {
        if self.is_single() {
            return self.main.commit(progress, transactions).await;
        }
        if std::mem::take(&mut self.one_lane) {
            self.settle_first = true;
            return self.commit_main(progress, transactions, true).await;
        }
        self.main.begin().await?;
        for (i, lane) in self.extra.iter_mut().enumerate() {
            if lane.in_transaction() {
                add_counts(&mut self.main.counts, &lane.counts);
            }
            lane.begin().await?;
            self.queued[i + 1].store(progress.lsn.0, Ordering::Release);
            lane.commit(progress, 0).await?;
        }
        self.commit_main(progress, transactions, false).await
    }

    async fn commit_main(
        &mut self,
        progress: Progress,
        transactions: i64,
        settles_lanes: bool,
    ) -> Result<(), ApplyError> {
        self.queued[0].store(progress.lsn.0, Ordering::Release);
        self.main.settles_lanes = settles_lanes;
        let result = self.main.commit(progress, transactions).await;
        self.main.settles_lanes = false;
        result
    }

    /// Records a position with nothing to apply (every lane has committed what it was given).
    pub async fn record_position(&mut self, progress: Progress) -> Result<(), ApplyError> {
        self.queued[0].store(progress.lsn.0, Ordering::Release);
        self.main.settles_lanes = !self.is_single();
        let result = self.main.record_position(progress).await;
        self.main.settles_lanes = false;
        result
    }

    /// Waits until every lane ran what it was given; returns the first failure.
    pub async fn drain(&mut self) -> Result<(), ApplyError> {
        let mut first = Ok(());
        for lane in self.all_mut() {
            let result = lane.drain().await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    /// Abandons the open group on every lane.
    pub async fn rollback(&mut self) {
        self.one_lane = false;
        for lane in self.all_mut() {
            lane.rollback().await;
        }
    }

    /// Whether a destination transaction is open on some lane.
    pub fn in_transaction(&self) -> bool {
        self.main.in_transaction() || self.extra.iter().any(Sink::in_transaction)
    }

    /// The group-commit position every lane has committed (see [`reached`]).
    pub fn committed(&self) -> watch::Receiver<Lsn> {
        self.committed.clone()
    }

    /// The position every lane has made durable: it may be acknowledged.
    pub fn durable(&self) -> watch::Receiver<Lsn> {
        self.durable.clone()
    }

    /// Changes to true when queued work failed on some lane.
    pub fn failed(&self) -> watch::Receiver<bool> {
        self.failed.clone()
    }

    /// Updates and deletes that found no row, on every lane, since start.
    pub fn missing_rows(&self) -> u64 {
        self.main.missing_rows() + self.extra.iter().map(Sink::missing_rows).sum::<u64>()
    }

    /// Lane 0's client inside the open group, after what was gathered ran (DDL, catalog reads):
    /// the rest of the group runs on lane 0.
    pub async fn settled(&mut self) -> Result<&tokio_postgres::Client, ApplyError> {
        self.one_lane("a destination catalog change").await?;
        self.main.settled().await
    }

    /// Truncates destination tables (on lane 0, see [`Self::one_lane`]).
    pub async fn truncate(&mut self, tables: &[TableName]) -> Result<(), ApplyError> {
        if !tables.is_empty() {
            self.one_lane("TRUNCATE").await?;
        }
        self.main.truncate(tables).await
    }

    /// Runs DDL in the open group (on lane 0, see [`Self::one_lane`]).
    pub async fn execute_ddl(&mut self, table: &TableName, sql: &str) -> Result<(), ApplyError> {
        self.one_lane("DDL").await?;
        self.main.execute_ddl(table, sql).await?;
        self.forget_statements();
        Ok(())
    }

    /// Runs DDL between groups, once every lane is idle.
    pub async fn run_ddl(
        &mut self,
        table: &TableName,
        statements: &[String],
    ) -> Result<(), ApplyError> {
        for lane in &mut self.extra {
            lane.drain().await?;
        }
        self.main.run_ddl(table, statements).await?;
        self.forget_statements();
        Ok(())
    }

    /// Follows a source DDL command (on lane 0, see [`Self::one_lane`]); the table is applied
    /// on one connection from then on.
    pub async fn apply_source_ddl(
        &mut self,
        statements: &[String],
        record: &crate::state::ddl_history::DdlRecord<'_>,
        state_sql: Option<String>,
    ) -> Result<super::schema_change::DdlOutcome, ApplyError> {
        self.one_lane("source DDL").await?;
        self.stop_spreading(record.dest_table);
        let outcome = self
            .main
            .apply_source_ddl(statements, record, state_sql)
            .await?;
        self.forget_statements();
        Ok(outcome)
    }

    /// Records a source DDL command skipped (on lane 0, see [`Self::one_lane`]).
    pub async fn skip_source_ddl(
        &mut self,
        record: &crate::state::ddl_history::DdlRecord<'_>,
        reason: &str,
    ) -> Result<(), ApplyError> {
        self.one_lane("source DDL").await?;
        self.main.skip_source_ddl(record, reason).await
    }

    /// Whether the change must run on lane 0 alone: an update that changes a spread table's
    /// key.
    pub fn needs_one_lane(&self, mapping: &TableMapping, change: &RowChange) -> bool {
        !self.is_single()
            && self.spread.contains(&mapping.destination)
            && lane_of(&mapping.key_indexes(), change, self.count()).is_none()
    }

    /// Forgets every lane's prepared statements (the tables they name changed).
    pub fn forget_statements(&mut self) {
        for lane in self.all_mut() {
            lane.forget_statements();
        }
    }

    /// Stops spreading a table (its key or constraints may have changed); called while it runs
    /// on one lane (see [`Self::one_lane`]), so its earlier changes on other lanes are committed.
    pub fn stop_spreading(&mut self, table: &TableName) {
        if self.spread.remove(table) {
            tracing::info!(%table, "table changed: applied on one connection from now on");
        }
    }
}

fn add_counts(to: &mut TxCounts, from: &TxCounts) {
    to.inserts += from.inserts;
    to.updates += from.updates;
    to.deletes += from.deletes;
    to.truncates += from.truncates;
    to.skipped += from.skipped;
    to.dead_lettered += from.dead_lettered;
}

/// The lane of a change of a spread table: its key's hash; `None` for an update that changes
/// the key (its old and new key may hash to different lanes).
fn lane_of(key: &[usize], change: &RowChange, lanes: usize) -> Option<usize> {
    let row = match change.op {
        Op::Delete => change.old.as_ref(),
        _ => change.new.as_ref(),
    }?;
    if let (Op::Update, Some(old)) = (change.op, &change.old) {
        if key.iter().any(|&k| old.get(k) != row.get(k)) {
            return None;
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for &k in key {
        match row.get(k).and_then(Cell::value) {
            Some(b) => b.hash(&mut h),
            // A key value not sent (NULL or unchanged): the change cannot be placed by key.
            _ => return None,
        }
    }
    Some((h.finish() % lanes as u64) as usize)
}

/// The position every lane has reached, from each lane's published position and the last
/// commit queued to it: the lowest position of a lane with commits still to reach, or, when
/// every lane reached all it was given, the highest.
pub fn reached(positions: &[Lsn], queued: &[u64]) -> Lsn {
    positions
        .iter()
        .zip(queued)
        .filter(|(p, q)| p.0 < **q)
        .map(|(p, _)| *p)
        .min()
        .unwrap_or_else(|| positions.iter().copied().max().unwrap_or_default())
}

/// A watch of [`reached`] over the lanes' watches (none needed for one lane).
fn merge_positions(
    lanes: impl Iterator<Item = watch::Receiver<Lsn>>,
    queued: &Arc<[AtomicU64]>,
) -> (watch::Receiver<Lsn>, Option<JoinHandle<()>>) {
    let mut rx: Vec<_> = lanes.collect();
    if rx.len() == 1 {
        return (rx.remove(0), None);
    }
    let (tx, out) = watch::channel(Lsn::ZERO);
    let queued = queued.clone();
    let task = tokio::spawn(async move {
        loop {
            let positions: Vec<Lsn> = rx.iter_mut().map(|r| *r.borrow_and_update()).collect();
            let q: Vec<u64> = queued.iter().map(|a| a.load(Ordering::Acquire)).collect();
            let at = reached(&positions, &q);
            tx.send_if_modified(|v| std::mem::replace(v, at) != at);
            let changed = select_all(rx.iter_mut().map(|r| Box::pin(r.changed()))).await;
            if changed.0.is_err() {
                return;
            }
        }
    });
    (out, Some(task))
}

/// A watch that is true once any lane's is.
fn merge_failed(
    lanes: impl Iterator<Item = watch::Receiver<bool>>,
) -> (watch::Receiver<bool>, Option<JoinHandle<()>>) {
    let mut rx: Vec<_> = lanes.collect();
    if rx.len() == 1 {
        return (rx.remove(0), None);
    }
    let (tx, out) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let any = rx.iter_mut().any(|r| *r.borrow_and_update());
            tx.send_if_modified(|v| std::mem::replace(v, any) != any);
            let changed = select_all(rx.iter_mut().map(|r| Box::pin(r.changed()))).await;
            if changed.0.is_err() {
                return;
            }
        }
    });
    (out, Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn text(s: &str) -> Cell {
        Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn change(op: Op, old: Option<&str>, new: Option<&str>) -> RowChange {
        RowChange {
            op,
            old: old.map(|k| vec![text(k), Cell::Null]),
            new: new.map(|k| vec![text(k), text("v")]),
        }
    }

    #[test]
    fn every_change_of_a_key_goes_to_one_lane() {
        let lanes: HashSet<usize> = (0..200)
            .map(|i| lane_of(&[0], &change(Op::Insert, None, Some(&i.to_string())), 4).unwrap())
            .collect();
        assert_eq!(lanes.len(), 4, "keys spread over every lane");
        for k in ["1", "42", "abc"] {
            let insert = lane_of(&[0], &change(Op::Insert, None, Some(k)), 4);
            let update = lane_of(&[0], &change(Op::Update, None, Some(k)), 4);
            let same_key = lane_of(&[0], &change(Op::Update, Some(k), Some(k)), 4);
            let delete = lane_of(&[0], &change(Op::Delete, Some(k), None), 4);
            assert!(insert.is_some());
            assert_eq!([insert, insert, insert], [update, same_key, delete]);
        }
    }

    #[test]
    fn a_changed_or_missing_key_has_no_lane() {
        assert_eq!(
            lane_of(&[0], &change(Op::Update, Some("1"), Some("2")), 4),
            None
        );
        let unsent = RowChange {
            op: Op::Update,
            old: None,
            new: Some(vec![Cell::Unchanged, text("v")]),
        };
        assert_eq!(lane_of(&[0], &unsent, 4), None);
    }

    #[test]
    fn reached_is_the_lowest_lane_still_behind_else_the_highest() {
        let p = |v: &[u64]| v.iter().map(|&x| Lsn(x)).collect::<Vec<_>>();
        // Lane 1 has a commit at 30 still to run.
        assert_eq!(reached(&p(&[30, 20, 30]), &[30, 30, 30]), Lsn(20));
        // Every lane ran what it was given; lane 0 alone took the last group.
        assert_eq!(reached(&p(&[50, 30, 30]), &[50, 30, 30]), Lsn(50));
        assert_eq!(reached(&p(&[0, 0]), &[0, 0]), Lsn(0));
        // A lane ahead of a lane behind does not count.
        assert_eq!(reached(&p(&[40, 10]), &[40, 40]), Lsn(10));
    }
}
