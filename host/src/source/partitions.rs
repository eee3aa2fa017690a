//! Partitioned source tables: their leaf partitions, which the snapshot reads one by one.

use tokio_postgres::Client;

use crate::model::TableName;

/// A leaf partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The partition's OID.
    pub oid: u32,
    /// Its schema-qualified name.
    pub name: TableName,
}

/// The leaf partitions holding a table's rows, in name order, or `None` when the table is not
/// partitioned. Partitions that are foreign tables hold no local rows and are left out.
pub async fn leaves(client: &Client, oid: u32) -> Result<Option<Vec<Leaf>>, tokio_postgres::Error> {
    let partitioned = client
        .query_opt(
            "SELECT 1 FROM pg_class WHERE oid = $1 AND relkind = 'p'",
            &[&oid],
        )
        .await?
        .is_some();
    if !partitioned {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text \
             FROM pg_partition_tree($1::oid::regclass) t \
             JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE t.isleaf AND c.relkind = 'r' ORDER BY 2, 3",
            &[&oid],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Leaf {
                oid: r.get(0),
                name: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            })
            .collect(),
    ))
}

/// The first of `selected` that is an ancestor of table `oid` (a partition), if any.
pub async fn selected_ancestor(
    client: &Client,
    oid: u32,
    selected: &[u32],
) -> Result<Option<u32>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT a.relid::oid FROM pg_partition_ancestors($1::oid::regclass) a \
             WHERE a.relid <> $1::oid::regclass AND a.relid::oid = ANY($2) LIMIT 1",
            &[&oid, &selected],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, u32>(0)))
}
