//! What applying an in-progress source transaction on a destination connection of its own
//! needs beyond [`Sink`]: savepoints for its subtransactions, and a watch that ends it when it
//! holds a lock the main apply connection waits for (the main connection applies transactions
//! that committed first, so it must never wait for a transaction that has not committed).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use super::error::{failed, ApplyError};
use super::Sink;
use crate::model::TableName;

/// How often the lock watch looks.
const LOCK_WATCH_EVERY: Duration = Duration::from_millis(500);
/// Looks in a row that must find the main connection blocked before the blocker is ended.
const BLOCKED_LOOKS: u32 = 3;

fn savepoint_name(subxid: u32) -> String {
    format!("pgmorph_sx_{subxid}")
}

impl Sink {
    /// Marks where subtransaction `subxid`'s changes start in the open transaction.
    pub async fn savepoint(&mut self, subxid: u32) -> Result<(), ApplyError> {
        self.begin().await?;
        self.flush().await?;
        let sql = format!("SAVEPOINT {}", savepoint_name(subxid));
        self.send_sql(&state_table(), sql).await
    }

    /// Undoes subtransaction `subxid` (and every change after it) in the open transaction.
    pub async fn rollback_to_savepoint(&mut self, subxid: u32) -> Result<(), ApplyError> {
        self.discard_unsent();
        let sql = format!("ROLLBACK TO SAVEPOINT {}", savepoint_name(subxid));
        self.send_sql(&state_table(), sql).await
    }

    /// The destination backend's process id.
    pub async fn backend_pid(&mut self) -> Result<i32, ApplyError> {
        let client = self.settled().await?;
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(failed(&state_table()))?;
        Ok(row.get(0))
    }
}

fn state_table() -> TableName {
    TableName::new("pgmorph", "state")
}

/// The backends of the connections applying in-progress transactions, shared with the watch.
pub type Blockers = Arc<Mutex<Vec<i32>>>;

/// Watches, on a connection of its own, whether an apply backend (`apply_pids`) waits for a
/// lock held by one of `blockers`; when it has for [`BLOCKED_LOOKS`] looks in a row, ends that
/// backend (its transaction rolls back, the main connection goes on, and the in-progress
/// transaction is applied again after its commit). Runs until dropped.
pub async fn watch_locks(client: Client, apply_pids: Vec<i32>, blockers: Blockers) {
    let mut looks = 0u32;
    loop {
        tokio::time::sleep(LOCK_WATCH_EVERY).await;
        let pids: Vec<i32> = blockers.lock().map(|b| b.clone()).unwrap_or_default();
        if pids.is_empty() {
            looks = 0;
            continue;
        }
        let blocking = client
            .query_opt(
                "SELECT b FROM unnest($1::int[]) AS w, unnest(pg_blocking_pids(w)) AS b \
                 WHERE b = ANY($2) LIMIT 1",
                &[&apply_pids, &pids],
            )
            .await;
        let Ok(Some(row)) = blocking else {
            looks = 0;
            continue;
        };
        looks += 1;
        if looks < BLOCKED_LOOKS {
            continue;
        }
        let pid: i32 = row.get(0);
        tracing::warn!(
            pid,
            "an apply connection waits for a lock held by an in-progress transaction: \
             ending it; the transaction is applied after its commit instead"
        );
        let _ = client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await;
        looks = 0;
    }
}
