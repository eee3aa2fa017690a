//! Reading the source catalog: which tables to replicate, their columns, keys and types.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::partitions;
use crate::config::Partitions;
use crate::model::{quote_ident, Column, ReplicaIdentity, TableName, TableSchema, UserType};

/// The catalog could not be read, or a table cannot be replicated.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A query failed.
    #[error("reading the source catalog failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A listed table does not exist.
    #[error("table {0} does not exist on the source (check source.tables)")]
    NoSuchTable(TableName),
    /// The selection is empty.
    #[error("no tables to replicate: schema {0:?} has no tables")]
    NothingSelected(String),
    /// A table has no way to identify old rows.
    #[error(
        "table {0} has no primary key or replica identity: add a primary key, or run \
         ALTER TABLE {1} REPLICA IDENTITY FULL on the source"
    )]
    NoIdentity(TableName, String),
    /// A partition is selected together with its partitioned table.
    #[error(
        "table {0} is a partition of {1}, which is selected too: with source.partitions = \"root\" \
         its rows replicate as rows of {1}; list only one of them, or set source.partitions = \"leaf\""
    )]
    PartitionOfSelected(TableName, TableName),
    /// The role cannot read a table.
    #[error("the source role may not read table {0}: GRANT SELECT ON {1} TO the replication role")]
    NoSelect(TableName, String),
}

/// The tables chosen for replication with their schemas, and the user types they need.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Tables in name order.
    pub tables: Vec<TableSchema>,
    /// User types by name, created on the destination in the destination schema.
    pub user_types: BTreeMap<String, UserType>,
}

/// Lists the tables `config` selects (see [`select_tables`]).
pub async fn select_configured(
    client: &Client,
    config: &crate::config::Config,
) -> Result<Vec<(u32, TableName)>, CatalogError> {
    let listed = config.listed_tables();
    let schema = config.source_schema();
    select_tables(client, &schema, listed.as_deref(), config.source.partitions).await
}

/// Lists the tables to replicate: `tables` when given, else every table of `schema`. With
/// [`Partitions::Root`] a partitioned table is one table and its partitions are not listed on
/// their own; with [`Partitions::Leaf`] its leaf partitions are listed instead.
pub async fn select_tables(
    client: &Client,
    schema: &str,
    tables: Option<&[TableName]>,
    partitions: Partitions,
) -> Result<Vec<(u32, TableName)>, CatalogError> {
    const BASE: &str = "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')";
    let mut out = Vec::new();
    match tables {
        Some(list) => {
            for t in list {
                let row = client
                    .query_opt(
                        &format!("{BASE} AND n.nspname = $1 AND c.relname = $2"),
                        &[&t.schema, &t.name],
                    )
                    .await?
                    .ok_or_else(|| CatalogError::NoSuchTable(t.clone()))?;
                out.push((row.get(0), t.clone()));
            }
        }
        None => {
            let scope = match partitions {
                Partitions::Root => "NOT c.relispartition",
                Partitions::Leaf => "c.relkind = 'r'",
            };
            let rows = client
                .query(
                    &format!("{BASE} AND {scope} AND n.nspname = $1"),
                    &[&schema],
                )
                .await?;
            if rows.is_empty() {
                return Err(CatalogError::NothingSelected(schema.to_string()));
            }
            out.extend(rows.iter().map(|r| {
                (
                    r.get(0),
                    TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                )
            }));
        }
    }
    match partitions {
        Partitions::Leaf => out = leaves_of(client, out).await?,
        Partitions::Root => check_no_partition_of_selected(client, &out).await?,
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// Refuses a selection holding a partition and one of its ancestors: published through the
/// root, the partition's own table would receive no change.
async fn check_no_partition_of_selected(
    client: &Client,
    tables: &[(u32, TableName)],
) -> Result<(), CatalogError> {
    let oids: Vec<u32> = tables.iter().map(|(oid, _)| *oid).collect();
    for (oid, name) in tables {
        if let Some(root) = partitions::selected_ancestor(client, *oid, &oids).await? {
            let root = tables
                .iter()
                .find(|(o, _)| *o == root)
                .map(|(_, n)| n.clone());
            return Err(CatalogError::PartitionOfSelected(
                name.clone(),
                root.expect("a selected oid"),
            ));
        }
    }
    Ok(())
}

/// Each partitioned table replaced by its leaf partitions.
async fn leaves_of(
    client: &Client,
    tables: Vec<(u32, TableName)>,
) -> Result<Vec<(u32, TableName)>, CatalogError> {
    let mut out = Vec::with_capacity(tables.len());
    for (oid, name) in tables {
        match partitions::leaves(client, oid).await? {
            None => out.push((oid, name)),
            Some(leaves) => out.extend(leaves.into_iter().map(|l| (l.oid, l.name))),
        }
    }
    Ok(out)
}

/// Reads the schema of every selected table and the user types they use, and checks that each
/// table can be replicated (readable, with a key or replica identity).
pub async fn describe(
    client: &Client,
    tables: &[(u32, TableName)],
    dest_schema: &str,
) -> Result<Selection, CatalogError> {
    let mut selection = Selection::default();
    for (oid, name) in tables {
        let table =
            describe_table(client, *oid, name, dest_schema, &mut selection.user_types).await?;
        if lacks_identity(&table) {
            return Err(CatalogError::NoIdentity(name.clone(), name.quoted()));
        }
        let readable: bool = client
            .query_one("SELECT has_table_privilege($1::oid, 'SELECT')", &[oid])
            .await?
            .get(0);
        if !readable {
            return Err(CatalogError::NoSelect(name.clone(), name.quoted()));
        }
        selection.tables.push(table);
    }
    Ok(selection)
}

/// Whether a table has no way to identify old rows: no primary key, and neither REPLICA
/// IDENTITY FULL nor a replica identity index (UPDATE and DELETE on it fail once published).
pub fn lacks_identity(table: &TableSchema) -> bool {
    let keyless = table.columns.iter().all(|c| !c.is_key);
    table.identity == ReplicaIdentity::Nothing
        || (keyless && table.identity != ReplicaIdentity::Full)
}

/// Reads the schema of every selected table without checking that it can be replicated (for
/// `pgmorph validate`, which reports every problem instead of stopping at the first).
pub async fn describe_unchecked(
    client: &Client,
    tables: &[(u32, TableName)],
    dest_schema: &str,
) -> Result<Selection, CatalogError> {
    let mut selection = Selection::default();
    for (oid, name) in tables {
        let table =
            describe_table(client, *oid, name, dest_schema, &mut selection.user_types).await?;
        selection.tables.push(table);
    }
    Ok(selection)
}

async fn describe_table(
    client: &Client,
    oid: u32,
    name: &TableName,
    dest_schema: &str,
    user_types: &mut BTreeMap<String, UserType>,
) -> Result<TableSchema, CatalogError> {
    let head = client
        .query_one(
            "SELECT c.relreplident::text, \
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    let identity = ReplicaIdentity::from_code(head.get::<_, String>(0).as_bytes()[0]);
    let has_primary_key: bool = head.get(1);
    // Key columns: the primary key, else the replica identity index.
    let key_rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1 AND (i.indisprimary OR (NOT $2 AND i.indisreplident))",
            &[&oid, &has_primary_key],
        )
        .await?;
    let keys: Vec<String> = key_rows.iter().map(|r| r.get(0)).collect();
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, a.attnotnull \
             FROM pg_attribute a \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await?;
    let mut columns = Vec::with_capacity(rows.len());
    for r in rows {
        let col_name: String = r.get(0);
        let type_oid: u32 = r.get(1);
        let type_modifier: i32 = r.get(2);
        let type_sql =
            resolve_type(client, type_oid, type_modifier, dest_schema, user_types).await?;
        columns.push(Column {
            is_key: keys.contains(&col_name),
            name: col_name,
            type_oid,
            type_modifier,
            type_sql,
            not_null: r.get(3),
        });
    }
    Ok(TableSchema {
        oid,
        name: name.clone(),
        columns,
        identity,
        has_primary_key,
    })
}

/// The SQL type to use on the destination for a source type: built-in types keep their name,
/// enums and domains are recreated in the destination schema, anything else travels as text.
pub async fn resolve_type(
    client: &Client,
    type_oid: u32,
    type_modifier: i32,
    dest_schema: &str,
    user_types: &mut BTreeMap<String, UserType>,
) -> Result<String, CatalogError> {
    let row = client
        .query_one(
            "SELECT format_type(t.oid, $2), t.typtype::text, n.nspname = 'pg_catalog', \
                    CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0::oid END \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1",
            &[&type_oid, &type_modifier],
        )
        .await?;
    let formatted: String = row.get(0);
    let elem: u32 = row.get(3);
    if elem != 0 {
        let inner = Box::pin(resolve_type(
            client,
            elem,
            type_modifier,
            dest_schema,
            user_types,
        ))
        .await?;
        if inner == "text" && !row.get::<_, bool>(2) {
            return Ok("text".into());
        }
        return Ok(if row.get::<_, bool>(2) {
            formatted
        } else {
            format!("{inner}[]")
        });
    }
    if row.get::<_, bool>(2) {
        return Ok(formatted);
    }
    let typtype: String = row.get(1);
    let own_name: String = client
        .query_one(
            "SELECT typname::text FROM pg_type WHERE oid = $1",
            &[&type_oid],
        )
        .await?
        .get(0);
    let qualified = format!("{}.{}", quote_ident(dest_schema), quote_ident(&own_name));
    match typtype.as_str() {
        "e" => {
            let labels = client
                .query(
                    "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                    &[&type_oid],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            user_types.insert(
                own_name.clone(),
                UserType::Enum {
                    name: own_name,
                    labels,
                },
            );
            Ok(qualified)
        }
        "d" => {
            let d = client
                .query_one(
                    "SELECT t.typbasetype, t.typtypmod, t.typnotnull FROM pg_type t WHERE t.oid = $1",
                    &[&type_oid],
                )
                .await?;
            let base_oid: u32 = d.get(0);
            let base_mod: i32 = d.get(1);
            let base_sql = Box::pin(resolve_type(
                client,
                base_oid,
                base_mod,
                dest_schema,
                user_types,
            ))
            .await?;
            let checks = client
                .query(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = $1 AND contype = 'c' ORDER BY conname",
                    &[&type_oid],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            user_types.insert(
                own_name.clone(),
                UserType::Domain {
                    name: own_name,
                    base_sql,
                    not_null: d.get(2),
                    checks,
                },
            );
            Ok(qualified)
        }
        _ => {
            tracing::warn!(type_name = %formatted, "type is not built in; it is replicated as text");
            Ok("text".into())
        }
    }
}
