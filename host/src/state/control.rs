//! Operator actions on a connector through its state rows: requests to a running connector
//! (stop, pause, resume, resync), counter resets and offset changes.

use tokio_postgres::Client;

use super::StateError;
use crate::model::Lsn;

/// A request a running connector picks up between transactions (within half a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop cleanly.
    Stop,
    /// Stop consuming changes until resumed.
    Pause,
    /// Resume after a pause.
    Resume,
    /// Copy the tables marked pending again.
    Resync,
}

impl Request {
    fn as_str(self) -> &'static str {
        match self {
            Request::Stop => "stop",
            Request::Pause => "pause",
            Request::Resume => "resume",
            Request::Resync => "resync",
        }
    }
}

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The connector has no state row.
    #[error("connector {0} has never run against this destination")]
    NoConnector(String),
    /// The table is not replicated by the connector.
    #[error("connector {0} does not replicate table {1}")]
    NoTable(String, String),
    /// A query failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        ControlError::State(StateError::from(e))
    }
}

/// Records a request for the running connector.
pub async fn request(client: &Client, name: &str, what: Request) -> Result<(), ControlError> {
    let n = client
        .execute(
            "UPDATE pgmorph.state SET request = $2 WHERE name = $1",
            &[&name, &what.as_str()],
        )
        .await?;
    if n == 0 {
        return Err(ControlError::NoConnector(name.to_string()));
    }
    Ok(())
}

/// Marks a table to be copied again (by a running connector after a `Resync` request, or at
/// the next start).
pub async fn mark_for_resync(client: &Client, name: &str, table: &str) -> Result<(), ControlError> {
    let n = client
        .execute(
            "UPDATE pgmorph.tables SET phase = 'pending', sync_lsn = NULL WHERE connector = $1 AND source_table = $2",
            &[&name, &table],
        )
        .await?;
    if n == 0 {
        return Err(ControlError::NoTable(name.to_string(), table.to_string()));
    }
    Ok(())
}

/// Zeroes the connector's counters.
pub async fn reset_stats(client: &Client, name: &str) -> Result<(), ControlError> {
    client
        .execute("DELETE FROM pgmorph.stats WHERE connector = $1", &[&name])
        .await?;
    client
        .execute(
            "INSERT INTO pgmorph.stats (connector) VALUES ($1)",
            &[&name],
        )
        .await?;
    Ok(())
}

/// The connector's last applied position.
pub async fn offset(client: &Client, name: &str) -> Result<Option<Lsn>, ControlError> {
    let row = client
        .query_opt(
            "SELECT last_offset->>'lsn' FROM pgmorph.state WHERE name = $1",
            &[&name],
        )
        .await?
        .ok_or_else(|| ControlError::NoConnector(name.to_string()))?;
    Ok(row.get::<_, Option<String>>(0).and_then(|s| s.parse().ok()))
}

/// Whether the connector's initial snapshot completed (`false` when it never ran).
pub async fn snapshot_done(client: &Client, name: &str) -> Result<bool, ControlError> {
    Ok(client
        .query_opt(
            "SELECT snapshot_done FROM pgmorph.state WHERE name = $1",
            &[&name],
        )
        .await?
        .is_some_and(|r| r.get(0)))
}

/// Sets the last applied position of a stopped connector (the caller checks that its slot is
/// not in use).
pub async fn set_offset(client: &Client, name: &str, lsn: Lsn) -> Result<(), ControlError> {
    let offset = super::Progress {
        lsn,
        ..Default::default()
    }
    .to_json()
    .to_string();
    client
        .execute(
            "UPDATE pgmorph.state SET last_offset = $2::text::jsonb WHERE name = $1",
            &[&name, &offset],
        )
        .await?;
    client
        .execute(
            "DELETE FROM pgmorph.apply_lanes WHERE connector = $1",
            &[&name],
        )
        .await?;
    Ok(())
}
