//! Which applied source transactions are durable on the destination.
//!
//! With `synchronous_commit = off` a destination COMMIT returns before its WAL is flushed: a
//! crash of the destination can still lose it. The writer then remembers, for each commit, the
//! destination's WAL insert position just after it, and a source position becomes durable only
//! once the destination's flushed WAL has passed that point. Only durable positions are
//! acknowledged to the source, so the slot never confirms a change the destination could lose.

use std::collections::VecDeque;

use tokio_postgres::{Client, Row, Statement};

use crate::model::Lsn;

/// The destination's WAL positions read right after a commit: where the commit record ends at
/// the latest (insert), and what is on disk (flush).
pub(crate) const POSITIONS: &str =
    "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text";

/// The destination's flushed WAL position.
pub(crate) const FLUSHED: &str = "SELECT pg_current_wal_flush_lsn()::text";

/// Commits waiting for the destination's WAL flush, oldest first.
#[derive(Debug, Default)]
pub(crate) struct FlushTracker {
    /// (destination WAL position the commit is inside, source end LSN it committed).
    waiting: VecDeque<(Lsn, Lsn)>,
}

impl FlushTracker {
    /// Records a commit of source position `source` that is durable once the destination's
    /// WAL is flushed up to `dest`.
    pub fn push(&mut self, dest: Lsn, source: Lsn) {
        self.waiting.push_back((dest, source));
    }

    /// Whether commits wait for the flush.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Forgets the commits the destination flushed up to `flushed`; returns the highest
    /// source position among them.
    pub fn release(&mut self, flushed: Lsn) -> Option<Lsn> {
        let mut durable = None;
        while let Some(&(dest, source)) = self.waiting.front() {
            if dest > flushed {
                break;
            }
            self.waiting.pop_front();
            durable = Some(source);
        }
        durable
    }
}

/// Flush tracking of a session that commits with `synchronous_commit = off`.
pub(crate) struct FlushWatch {
    /// [`POSITIONS`], sent right behind each COMMIT in the same pipeline.
    pub positions: Statement,
    flushed: Statement,
    tracker: FlushTracker,
}

impl FlushWatch {
    /// Prepares the position queries on the apply connection.
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            positions: client.prepare(POSITIONS).await?,
            flushed: client.prepare(FLUSHED).await?,
            tracker: FlushTracker::default(),
        })
    }

    /// Records the commit of source position `source`, given the [`POSITIONS`] row read right
    /// after it; returns the highest source position now durable.
    pub fn committed(&mut self, source: Lsn, positions: &Row) -> Option<Lsn> {
        // An unreadable position releases nothing: the commit waits rather than being
        // acknowledged early.
        let insert = lsn_at(positions, 0).unwrap_or(Lsn(u64::MAX));
        let flushed = lsn_at(positions, 1).unwrap_or_default();
        self.tracker.push(insert, source);
        self.tracker.release(flushed)
    }

    /// Whether commits wait for the destination's flush.
    pub fn waiting(&self) -> bool {
        !self.tracker.is_empty()
    }

    /// Reads the destination's flushed position; returns the highest source position now
    /// durable.
    pub async fn poll(&mut self, client: &Client) -> Result<Option<Lsn>, tokio_postgres::Error> {
        let row = client.query_one(&self.flushed, &[]).await?;
        Ok(self.tracker.release(lsn_at(&row, 0).unwrap_or_default()))
    }
}

/// The `pg_lsn` text in column `i`.
fn lsn_at(row: &Row, i: usize) -> Option<Lsn> {
    row.get::<_, Option<&str>>(i).and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_durable_only_once_the_flush_passes_it() {
        let mut t = FlushTracker::default();
        t.push(Lsn(100), Lsn(10));
        t.push(Lsn(200), Lsn(20));
        t.push(Lsn(300), Lsn(30));
        assert_eq!(t.release(Lsn(99)), None, "nothing flushed yet");
        assert_eq!(t.release(Lsn(100)), Some(Lsn(10)), "flushed exactly to it");
        assert_eq!(
            t.release(Lsn(299)),
            Some(Lsn(20)),
            "the third is still waiting"
        );
        assert!(!t.is_empty());
        assert_eq!(t.release(Lsn(1000)), Some(Lsn(30)));
        assert!(t.is_empty());
        assert_eq!(t.release(Lsn(2000)), None, "nothing left to release");
    }
}
