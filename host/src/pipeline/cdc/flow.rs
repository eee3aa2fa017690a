//! What the CDC loop tracks between events: the open source transaction, changes read and not
//! written yet, the group commit, and positions with nothing to apply.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{Lsn, Provenance, RowChange, TableMapping};
use crate::state::Progress;
use crate::transform::{TableBatch, MAX_BATCH_BYTES};

/// Changes of one table handed to the row step at once.
pub(super) const ROW_BATCH: usize = 1000;

/// How often, at most, a position that brought nothing to apply (empty transactions,
/// keepalives) is written to the destination so that it can be acknowledged.
pub(super) const IDLE_POSITION_EVERY: Duration = Duration::from_secs(1);

/// Source transactions applied in one destination transaction, at most.
pub(super) const MAX_GROUP_TX: i64 = 200;
/// How long a destination transaction may stay open to take in more source transactions.
pub(super) const MAX_GROUP_DELAY: Duration = Duration::from_millis(100);

/// Whole source transactions applied in the open destination transaction, not committed yet.
///
/// Group commit: a source transaction's commit goes out at once when the writer has no commit
/// in flight. While one is in flight the destination is the bottleneck, so the following
/// source transactions join the open destination transaction, which commits when the writer
/// is free again (or at [`MAX_GROUP_TX`] transactions or after [`MAX_GROUP_DELAY`]). Each
/// source transaction still lands whole or not at all, and progress is written with the group.
pub(super) struct Group {
    pub(super) started: Instant,
    pub(super) transactions: i64,
    /// Progress of the last source transaction in the group.
    pub(super) progress: Progress,
}

impl Group {
    pub(super) fn full(&self) -> bool {
        self.transactions >= MAX_GROUP_TX || self.started.elapsed() >= MAX_GROUP_DELAY
    }
}

/// A stream position past everything applied that brought nothing to write (transactions the
/// publication or the plugins left empty, keepalives). It is acknowledged only once written to
/// the destination's progress row, so the slot never gets ahead of the destination.
#[derive(Default)]
pub(super) struct IdlePosition {
    /// The highest such position seen.
    pub(super) target: Lsn,
    /// When one was last written.
    pub(super) written_at: Option<Instant>,
}

impl IdlePosition {
    pub(super) fn saw(&mut self, lsn: Lsn) {
        self.target = self.target.max(lsn);
    }

    /// When the next one may be written.
    pub(super) fn due(&self) -> Option<Instant> {
        Some(
            self.written_at
                .map_or_else(Instant::now, |t| t + IDLE_POSITION_EVERY),
        )
    }
}

/// Changes read but not written yet: consecutive changes of one table in one transaction
/// form a batch. Batches go through the row step together, up to [`ROW_BATCH`] rows, so
/// small transactions that touch several tables pay the trip to the plugins once per group
/// commit rather than once per table.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) batches: Vec<TableBatch>,
    /// Each batch's transaction (its final LSN), for dead letters.
    pub(super) lsns: Vec<Lsn>,
    pub(super) rows: usize,
    /// Bytes of values held.
    pub(super) bytes: usize,
}

impl Pending {
    /// Adds a change of the transaction ending at `lsn`, which happened at `at`.
    pub(super) fn push(
        &mut self,
        mapping: Arc<TableMapping>,
        change: RowChange,
        lsn: Lsn,
        at: Provenance,
    ) {
        self.rows += 1;
        self.bytes += change.value_bytes();
        if let (Some(last), Some(&last_lsn)) = (self.batches.last_mut(), self.lsns.last()) {
            if Arc::ptr_eq(&last.mapping, &mapping) && last_lsn == lsn {
                last.changes.push(change);
                return;
            }
        }
        self.batches
            .push(TableBatch::new(mapping, vec![change]).at(at));
        self.lsns.push(lsn);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether the changes must be written before more are read: [`ROW_BATCH`] rows, or
    /// [`MAX_BATCH_BYTES`] of values (memory stays bounded with large values too).
    pub(super) fn full(&self) -> bool {
        self.rows >= ROW_BATCH || self.bytes >= MAX_BATCH_BYTES
    }

    pub(super) fn take(&mut self) -> (Vec<TableBatch>, Vec<Lsn>) {
        self.rows = 0;
        self.bytes = 0;
        (
            std::mem::take(&mut self.batches),
            std::mem::take(&mut self.lsns),
        )
    }

    /// Whether some batch goes through plugins: then the batches may wait for the group's
    /// next transactions, so that one trip to the plugins serves them all.
    pub(super) fn waits_for_plugins(&self) -> bool {
        self.batches.iter().any(|b| b.mapping.transforms_rows)
    }
}

pub(super) struct OpenTx {
    pub(super) final_lsn: Lsn,
    pub(super) xid: u32,
    pub(super) skip: bool,
    /// Commit time, microseconds since 2000-01-01.
    pub(super) commit_time: i64,
    /// Changes of the transaction pushed so far.
    pub(super) changes: u64,
}

/// What the loop tracks between events.
pub(super) struct Flow {
    /// The source transaction being read.
    pub(super) tx: Option<OpenTx>,
    /// Changes read and not written yet.
    pub(super) pending: Pending,
    /// Relations that changed: the destination table may lack columns.
    pub(super) needs_ddl_check: HashSet<u32>,
    /// The last position acknowledged.
    pub(super) acked: Lsn,
    /// Source transactions in the open destination transaction.
    pub(super) group: Option<Group>,
    /// A position with nothing to apply, waiting to be recorded.
    pub(super) position: IdlePosition,
    /// End LSN of the last commit handed to the writer.
    pub(super) queued: Lsn,
}

impl Flow {
    pub(super) fn new(acked: Lsn) -> Self {
        Self {
            tx: None,
            pending: Pending::default(),
            needs_ddl_check: HashSet::new(),
            acked,
            group: None,
            position: IdlePosition::default(),
            queued: Lsn::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cell, Op, ReplicaIdentity, TableName, TableSchema};

    pub(super) fn mapping(name: &str, transforms_rows: bool) -> Arc<TableMapping> {
        let schema = TableSchema {
            oid: 1,
            name: TableName::new("public", name),
            columns: vec![],
            identity: ReplicaIdentity::Default,
            has_primary_key: true,
        };
        let mut m = TableMapping::identity(Arc::new(schema), "dst");
        m.transforms_rows = transforms_rows;
        Arc::new(m)
    }

    pub(super) fn insert(bytes: usize) -> RowChange {
        RowChange {
            op: Op::Insert,
            old: None,
            new: Some(vec![Cell::Text(vec![b'x'; bytes].into())]),
        }
    }

    #[test]
    pub(super) fn consecutive_changes_of_one_table_and_transaction_form_one_batch() {
        let (a, b) = (mapping("a", false), mapping("b", true));
        let mut p = Pending::default();
        p.push(a.clone(), insert(1), Lsn(10), Provenance::default());
        p.push(a.clone(), insert(1), Lsn(10), Provenance::default());
        p.push(b.clone(), insert(1), Lsn(10), Provenance::default());
        p.push(a.clone(), insert(1), Lsn(20), Provenance::default());
        assert!(p.waits_for_plugins(), "b goes through plugins");
        let (batches, lsns) = p.take();
        let sizes: Vec<usize> = batches.iter().map(|b| b.changes.len()).collect();
        assert_eq!(sizes, [2, 1, 1]);
        assert_eq!(lsns, [Lsn(10), Lsn(10), Lsn(20)]);
        assert!(p.is_empty() && !p.full());
    }

    #[test]
    pub(super) fn pending_changes_are_full_by_rows_or_by_bytes() {
        let a = mapping("a", false);
        let mut p = Pending::default();
        for _ in 0..ROW_BATCH - 1 {
            p.push(a.clone(), insert(1), Lsn(1), Provenance::default());
        }
        assert!(!p.full());
        p.push(a.clone(), insert(1), Lsn(1), Provenance::default());
        assert!(p.full(), "{ROW_BATCH} rows");
        let mut p = Pending::default();
        p.push(
            a.clone(),
            insert(MAX_BATCH_BYTES / 2),
            Lsn(1),
            Provenance::default(),
        );
        assert!(!p.full());
        p.push(
            a,
            insert(MAX_BATCH_BYTES / 2),
            Lsn(1),
            Provenance::default(),
        );
        assert!(p.full(), "{MAX_BATCH_BYTES} bytes of values");
    }

    #[test]
    pub(super) fn an_idle_position_is_due_at_once_then_at_most_once_a_second() {
        let mut pos = IdlePosition::default();
        pos.saw(Lsn(5));
        pos.saw(Lsn(3));
        assert_eq!(pos.target, Lsn(5), "the highest position seen");
        let now = Instant::now();
        assert!(pos.due().is_some_and(|d| d <= Instant::now() && d >= now));
        pos.written_at = Some(now);
        assert_eq!(pos.due(), Some(now + IDLE_POSITION_EVERY));
    }

    #[test]
    pub(super) fn a_group_is_full_after_its_transactions_or_its_delay() {
        let mut g = Group {
            started: Instant::now(),
            transactions: MAX_GROUP_TX - 1,
            progress: Progress::default(),
        };
        assert!(!g.full());
        g.transactions += 1;
        assert!(g.full());
        g.transactions = 1;
        g.started = Instant::now() - MAX_GROUP_DELAY;
        assert!(g.full());
    }
}
