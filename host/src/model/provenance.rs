//! [`Provenance`]: where and when a batch of changes happened on the source, the facts a
//! plugin's clock and random numbers are derived from.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Where and when a batch of changes happened: what a plugin without a `clock = "real"` or
/// `random = "real"` grant sees as the time and draws its random numbers from, so that a replay
/// of the same changes gives the same output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The source commit time of the transaction (the snapshot's start for snapshot rows), in
    /// microseconds since the Unix epoch.
    pub time_us: i64,
    /// What `row` counts in.
    pub scope: Scope,
    /// The position of the batch's first row in its scope, from 0.
    pub row: u64,
}

/// What a [`Provenance`]'s row position counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Changes of one source transaction, named by the LSN of its commit record.
    Transaction(u64),
    /// Rows one snapshot COPY read (a whole table, a page range or a leaf partition), named by
    /// a hash of what it read.
    Snapshot(u64),
    /// Rows given by hand (`pgmorph plugin run`, tests).
    #[default]
    Offline,
}

impl Provenance {
    /// The changes of a transaction, from its commit LSN and its commit time as pgoutput sends
    /// it (microseconds since 2000-01-01).
    pub fn transaction(final_lsn: u64, pg_commit_time: i64) -> Self {
        Self {
            time_us: pg_commit_time.saturating_add(PG_EPOCH_US),
            scope: Scope::Transaction(final_lsn),
            row: 0,
        }
    }

    /// The same origin, `row` rows further on.
    pub fn at_row(self, row: u64) -> Self {
        Self { row, ..self }
    }

    /// Microseconds since the Unix epoch of `time` (0 before it).
    pub fn unix_us(time: SystemTime) -> i64 {
        time.duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_time_moves_from_the_postgresql_epoch_to_the_unix_epoch() {
        let p = Provenance::transaction(42, 0);
        assert_eq!(p.time_us, 946_684_800_000_000);
        assert_eq!(p.scope, Scope::Transaction(42));
        assert_eq!(p.at_row(7).row, 7);
    }
}
