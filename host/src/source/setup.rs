//! Source preparation: server checks, the publication and the replication slot.

use tokio_postgres::Client;

use crate::model::{quote_ident, Lsn};

/// The source server is not ready for logical replication, or setting it up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `wal_level` is not `logical`.
    #[error(
        "the source server has wal_level={0}; logical replication needs wal_level=logical \
         (set it in postgresql.conf or with ALTER SYSTEM SET wal_level = logical, then restart the server)"
    )]
    WalLevel(String),
    /// The role lacks the REPLICATION attribute.
    #[error(
        "source role {0:?} may not replicate: run ALTER ROLE {1} REPLICATION (or use a superuser)"
    )]
    NotReplicationRole(String, String),
    /// A query failed.
    #[error("preparing the source failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// Checks `wal_level` and the role's replication privilege.
pub async fn check_server(client: &Client) -> Result<(), SetupError> {
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if wal_level != "logical" {
        return Err(SetupError::WalLevel(wal_level));
    }
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(1) {
        let user: String = row.get(0);
        return Err(SetupError::NotReplicationRole(
            user.clone(),
            quote_ident(&user),
        ));
    }
    Ok(())
}

/// The slot's `failover` property (PostgreSQL 17+; `None` on older servers or without the
/// slot).
pub async fn slot_failover(
    client: &Client,
    slot: &str,
    server_version_num: u32,
) -> Result<Option<bool>, SetupError> {
    if server_version_num < super::versions::FAILOVER_SLOTS {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT failover FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The state of the replication slot on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// The position up to which the source considers changes received.
    pub confirmed_flush: Option<Lsn>,
    /// Whether another session currently streams from it.
    pub active: bool,
    /// The source process streaming from it, if one does.
    pub active_pid: Option<i32>,
    /// Whether the source invalidated it (`wal_status = 'lost'`: it kept more WAL than
    /// `max_slot_wal_keep_size` allowed, and the changes since are gone).
    pub lost: bool,
}

/// Looks up a logical slot by name.
pub async fn slot_info(client: &Client, slot: &str) -> Result<Option<SlotInfo>, SetupError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active, active_pid, wal_status = 'lost' \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotInfo {
        confirmed_flush: r.get::<_, Option<String>>(0).and_then(|s| s.parse().ok()),
        active: r.get(1),
        active_pid: r.get(2),
        lost: r.get::<_, Option<bool>>(3).unwrap_or(false),
    }))
}

/// What a slot keeps on the source and how close it is to being invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// WAL kept for the slot, in bytes.
    pub retained: u64,
    /// WAL that can still be written before the slot is invalidated (`safe_wal_size`), when
    /// `max_slot_wal_keep_size` is set.
    pub safe: Option<i64>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` (will be lost at the next
    /// checkpoint unless it catches up) or `lost`.
    pub status: Option<&'static str>,
    /// WAL written on the source past the slot's confirmed position, in bytes (`None` before
    /// the slot confirmed anything).
    pub behind: Option<u64>,
}

/// The slot's retention on the source, if the slot exists.
pub async fn retention(client: &Client, slot: &str) -> Result<Option<Retention>, SetupError> {
    let row = client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, safe_wal_size, \
                    wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| Retention {
        retained: r.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64,
        safe: r.get(1),
        status: match r.get::<_, Option<&str>>(2) {
            Some("reserved") => Some("reserved"),
            Some("extended") => Some("extended"),
            Some("unreserved") => Some("unreserved"),
            Some("lost") => Some("lost"),
            _ => None,
        },
        behind: r.get::<_, Option<i64>>(3).map(|b| b.max(0) as u64),
    }))
}

/// Drops a slot if it exists (waiting for its user to go away).
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), SetupError> {
    client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(())
}

/// Drops a publication if it exists.
pub async fn drop_publication(client: &Client, name: &str) -> Result<(), SetupError> {
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await?;
    Ok(())
}
