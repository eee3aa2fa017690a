//! What `pgmorph validate` reads from the source, changing nothing: server settings, the
//! role's attributes, free slots and WAL senders, the slot and publication, table privileges.

use tokio_postgres::Client;

use crate::model::Lsn;

/// Server settings and the role's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `wal_level`.
    pub wal_level: String,
    /// The session's role.
    pub user: String,
    /// Whether the role has the REPLICATION attribute.
    pub replication: bool,
    /// Whether the role is a superuser.
    pub superuser: bool,
    /// Whether the role may create publications in the database (CREATE on it).
    pub create_on_database: bool,
    /// Whether this session runs over TLS.
    pub tls: bool,
    /// `max_replication_slots` and the slots that exist.
    pub slots: (i64, i64),
    /// `max_wal_senders` and the WAL senders running.
    pub wal_senders: (i64, i64),
    /// `server_version_num`.
    pub version_num: u32,
}

/// Reads the server's settings and the role's attributes.
pub async fn server(client: &Client) -> Result<ServerFacts, tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT current_setting('wal_level'), current_user::text, r.rolreplication, r.rolsuper, \
                    has_database_privilege(current_database(), 'CREATE'), \
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
                    current_setting('max_replication_slots')::int8, \
                    (SELECT count(*) FROM pg_replication_slots), \
                    current_setting('max_wal_senders')::int8, \
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'), \
                    current_setting('server_version_num')::int4 \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    Ok(ServerFacts {
        wal_level: r.get(0),
        user: r.get(1),
        replication: r.get(2),
        superuser: r.get(3),
        create_on_database: r.get(4),
        tls: r.get(5),
        slots: (r.get(6), r.get(7)),
        wal_senders: (r.get(8), r.get(9)),
        version_num: r.get::<_, i32>(10).max(0) as u32,
    })
}

/// A replication slot as the source shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFacts {
    /// `logical` or `physical`.
    pub slot_type: String,
    /// The output plugin of a logical slot.
    pub plugin: Option<String>,
    /// The database of a logical slot.
    pub database: Option<String>,
    /// Whether a session streams from it now, and which process.
    pub active_pid: Option<i32>,
    /// Whether the source invalidated it (`wal_status = 'lost'`).
    pub lost: bool,
    /// The position the source considers received.
    pub confirmed_flush: Option<Lsn>,
    /// Whether standbys keep a copy of it (PostgreSQL 17+; `None` before).
    pub failover: Option<bool>,
}

/// The slot named `slot`, if it exists.
pub async fn slot(client: &Client, slot: &str) -> Result<Option<SlotFacts>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT slot_type, plugin::text, database::text, active_pid, \
                    coalesce(wal_status = 'lost', false), confirmed_flush_lsn::text, \
                    (to_jsonb(s) ->> 'failover')::bool \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotFacts {
        slot_type: r.get(0),
        plugin: r.get(1),
        database: r.get(2),
        active_pid: r.get(3),
        lost: r.get(4),
        confirmed_flush: r.get::<_, Option<String>>(5).and_then(|s| s.parse().ok()),
        failover: r.get(6),
    }))
}

/// A publication as the source shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationFacts {
    /// The tables it publishes (`schema.table`), partitions of published tables included.
    pub tables: Vec<String>,
    /// Whether it publishes inserts, updates, deletes and truncates.
    pub all_actions: bool,
}

/// The publication named `name`, if it exists.
pub async fn publication(
    client: &Client,
    name: &str,
) -> Result<Option<PublicationFacts>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM pg_publication \
             WHERE pubname = $1",
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let tables = client
        .query(
            "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(PublicationFacts {
        tables,
        all_actions: row.get(0),
    }))
}

/// What the role may do with one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableAccess {
    /// SELECT is granted (the snapshot reads it).
    pub select: bool,
    /// The role owns it (needed to add it to a publication).
    pub owner: bool,
}

/// The role's access to the table with `oid`.
pub async fn table_access(client: &Client, oid: u32) -> Result<TableAccess, tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT has_table_privilege($1::oid, 'SELECT'), pg_has_role(relowner, 'USAGE') \
             FROM pg_class WHERE oid = $1",
            &[&oid],
        )
        .await?;
    Ok(TableAccess {
        select: r.get(0),
        owner: r.get(1),
    })
}

/// The end of everything the source has written to its WAL so far: the insert position
/// (`pg_current_wal_insert_lsn()`, which unlike `pg_current_wal_lsn()` includes commits not
/// yet written out under `synchronous_commit = off`). A position inside a page header is
/// moved back to the page's start, where the last record ended.
pub async fn current_wal_lsn(client: &Client) -> Result<Lsn, tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int8",
            &[],
        )
        .await?;
    let lsn: Lsn = r.get::<_, String>(0).parse().unwrap_or_default();
    let page = r.get::<_, i64>(1).max(1) as u64;
    Ok(Lsn(end_of_records(lsn.0, page)))
}

/// The longest WAL page header (the first page of a segment).
const LONG_PAGE_HEADER: u64 = 40;

fn end_of_records(lsn: u64, page: u64) -> u64 {
    match lsn % page {
        offset if offset <= LONG_PAGE_HEADER => lsn - offset,
        _ => lsn,
    }
}

#[cfg(test)]
mod tests {
    use super::end_of_records;

    #[test]
    fn a_position_in_a_page_header_means_the_end_of_the_page_before() {
        assert_eq!(end_of_records(8192 * 3 + 24, 8192), 8192 * 3);
        assert_eq!(end_of_records(8192 * 3 + 40, 8192), 8192 * 3);
        assert_eq!(end_of_records(8192 * 3 + 41, 8192), 8192 * 3 + 41);
        assert_eq!(end_of_records(8192 * 3, 8192), 8192 * 3);
    }
}
