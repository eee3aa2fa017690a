//! Reconnection attempts in the state row: while a running connector connects again after a
//! lost connection, `status` says `reconnecting`, how many attempts failed in a row and why.

use serde::Serialize;

use super::{StateError, StateStore};

/// The reconnection figures of `pgmorph status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Retries {
    /// Failed attempts in a row; 0 once the connector copies or streams again.
    pub current: i32,
    /// Every reconnection attempt since the connector's state row was made.
    pub total: i32,
    /// The error that caused the last attempt.
    pub last_error: Option<String>,
    /// When the last attempt was scheduled.
    pub last_at: Option<String>,
}

/// The columns [`Retries::from_row`] reads, in order.
pub(super) const COLUMNS: &str = "retries, retries_total, last_retry_error, \
     to_char(last_retry_at, 'YYYY-MM-DD HH24:MI:SS TZ')";

impl Retries {
    /// Reads [`COLUMNS`] from `row`, starting at column `at`.
    pub(super) fn from_row(row: &tokio_postgres::Row, at: usize) -> Self {
        Self {
            current: row.get(at),
            total: row.get(at + 1),
            last_error: row.get(at + 2),
            last_at: row.get(at + 3),
        }
    }
}

impl StateStore {
    /// Records that the connector lost a connection with `err` and tries again: `attempt` of
    /// the current run of failures, `count` attempts not recorded before.
    pub async fn record_retry(
        &self,
        attempt: u32,
        count: u32,
        err: &str,
    ) -> Result<(), StateError> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        self.client
            .execute(
                "UPDATE pgmorph.state SET state = 'reconnecting', err = $2, \
                 err_kind = 'retry later', pid = $4, retries = $3, \
                 retries_total = retries_total + $5, last_retry_error = $2, \
                 last_retry_at = now(), updated_at = now() WHERE name = $1",
                &[
                    &self.name,
                    &err,
                    &attempt,
                    &(std::process::id() as i32),
                    &count,
                ],
            )
            .await?;
        Ok(())
    }
}
