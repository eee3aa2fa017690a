//! The catalog's estimate of a table's rows and size, against which the snapshot reports its
//! progress.

use tokio_postgres::Client;

/// What the catalog expects a table (with its partitions) to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// `reltuples` summed over the table's leaves; `None` when one was never analyzed.
    pub rows: Option<u64>,
    /// `pg_relation_size` summed over the table's leaves.
    pub bytes: u64,
}

/// The estimate for the table with `oid` (a partitioned table: the sum over its leaves).
pub async fn estimate(client: &Client, oid: u32) -> Result<Estimate, tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT CASE WHEN bool_or(c.reltuples < 0) THEN NULL \
                         ELSE coalesce(sum(c.reltuples), 0)::int8 END, \
                    coalesce(sum(pg_relation_size(c.oid)), 0)::int8 \
             FROM pg_class c \
             WHERE (c.oid = $1 AND c.relkind <> 'p') \
                OR c.oid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass) WHERE isleaf)",
            &[&oid],
        )
        .await?;
    Ok(Estimate {
        rows: r.get::<_, Option<i64>>(0).map(|n| n.max(0) as u64),
        bytes: r.get::<_, i64>(1).max(0) as u64,
    })
}
