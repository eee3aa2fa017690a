//! What one destination transaction applies, gathered while the sink builds it and recorded
//! when the writer reports its commit.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{Op, RowChange, TableName};

/// The `op` label of each count, in [`Tally`] order.
pub(super) const OPS: [&str; 4] = ["insert", "update", "delete", "truncate"];

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECS: u64 = 946_684_800;

/// Changes of the open destination transaction, per source table and operation.
#[derive(Debug, Default)]
pub struct Tally {
    tables: Vec<(TableName, [u64; 4])>,
}

impl Tally {
    /// Counts a batch of changes to `table` (no-op while metrics are off).
    pub fn add(&mut self, table: &TableName, changes: &[RowChange]) {
        if super::get().is_none() || changes.is_empty() {
            return;
        }
        let counts = self.counts(table);
        for c in changes {
            let i = match c.op {
                Op::Insert | Op::Snapshot => 0,
                Op::Update => 1,
                Op::Delete => 2,
            };
            counts[i] += 1;
        }
    }

    /// Counts a TRUNCATE of `table`.
    pub fn truncate(&mut self, table: &TableName) {
        if super::get().is_some() {
            self.counts(table)[3] += 1;
        }
    }

    fn counts(&mut self, table: &TableName) -> &mut [u64; 4] {
        let i = match self.tables.iter().position(|(t, _)| t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table.clone(), [0; 4]));
                self.tables.len() - 1
            }
        };
        &mut self.tables[i].1
    }

    /// Ends the tally at the commit of `transactions` source transactions, the last of which
    /// committed on the source at `commit_time` (microseconds since 2000-01-01). `None` while
    /// metrics are off.
    pub fn finish(&mut self, transactions: i64, commit_time: i64) -> Option<Applied> {
        super::get()?;
        let tables = std::mem::take(&mut self.tables);
        Some(Applied {
            tables: tables
                .into_iter()
                .map(|(t, counts)| (t.to_string(), counts))
                .collect(),
            transactions: transactions.max(0) as u64,
            commit_time,
        })
    }

    /// Forgets the counts of a transaction rolled back.
    pub fn clear(&mut self) {
        self.tables.clear();
    }
}

/// A destination transaction's changes, recorded once it committed ([`Applied::record`]).
#[derive(Debug)]
pub struct Applied {
    pub(super) tables: Vec<(String, [u64; 4])>,
    pub(super) transactions: u64,
    /// Source commit time of the last transaction, microseconds since 2000-01-01.
    commit_time: i64,
}

impl Applied {
    /// Records the committed changes, transactions and lag.
    pub fn record(&self) {
        super::applied(self);
    }

    /// Seconds from the last source commit to now.
    pub(super) fn lag_seconds(&self) -> f64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let pg_now = now - (PG_EPOCH_SECS as i64) * 1_000_000;
        (pg_now - self.commit_time).max(0) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_table_and_operation_and_lag_from_the_source_commit() {
        super::super::install();
        let (a, b) = (TableName::new("public", "a"), TableName::new("public", "b"));
        let change = |op| RowChange {
            op,
            old: None,
            new: None,
        };
        let mut tally = Tally::default();
        tally.add(
            &a,
            &[change(Op::Insert), change(Op::Update), change(Op::Insert)],
        );
        tally.add(&b, &[change(Op::Delete)]);
        tally.add(&a, &[change(Op::Update), change(Op::Insert)]);
        tally.truncate(&b);
        let now_pg = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
            - (PG_EPOCH_SECS as i64) * 1_000_000;
        let applied = tally.finish(2, now_pg - 1_500_000).expect("installed");
        assert_eq!(
            applied.tables,
            vec![
                ("public.a".to_string(), [3, 2, 0, 0]),
                ("public.b".to_string(), [0, 0, 1, 1])
            ]
        );
        let lag = applied.lag_seconds();
        assert!((1.5..5.0).contains(&lag), "{lag}");
        assert!(tally.finish(0, 0).expect("installed").tables.is_empty());
    }
}
