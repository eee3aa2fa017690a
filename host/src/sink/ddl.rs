//! Destination DDL: the destination schema, user types and mapped tables.

use std::collections::HashSet;

use tokio_postgres::Client;

use crate::model::{quote_ident, quote_literal, TableMapping, TableName, UserType};

/// Creating destination objects failed.
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// A statement failed.
    #[error("creating {what} on the destination failed: {source}")]
    Statement {
        /// The object.
        what: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// A table exists with columns that do not fit the mapping.
    #[error(
        "destination table {table} already exists without column {column}: drop it, or map the \
         table elsewhere (destination.schema or a rename plugin)"
    )]
    Incompatible {
        /// Destination table.
        table: String,
        /// The missing column.
        column: String,
    },
}

fn stmt(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DdlError {
    let what = what.into();
    move |source| DdlError::Statement { what, source }
}

/// Creates the schema (if missing) and the user types that do not exist yet.
pub async fn ensure_schema_and_types(
    client: &Client,
    schema: &str,
    types: &[&UserType],
) -> Result<(), DdlError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .await
        .map_err(stmt(format!("schema {schema}")))?;
    for t in types {
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname = $1 AND t.typname = $2",
                &[&schema, &t.name()],
            )
            .await
            .map_err(stmt(format!("type {schema}.{}", t.name())))?
            .is_some();
        if !exists {
            client
                .batch_execute(&create_user_type_sql(schema, t))
                .await
                .map_err(stmt(format!("type {schema}.{}", t.name())))?;
        }
    }
    Ok(())
}

/// The `CREATE TABLE` statement for a mapping.
pub fn create_table_sql(m: &TableMapping) -> String {
    let mut parts: Vec<String> = m
        .columns
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", quote_ident(&c.name), c.type_sql);
            if c.not_null {
                s.push_str(" NOT NULL");
            }
            s
        })
        .collect();
    let keys: Vec<String> = m
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| quote_ident(&c.name))
        .collect();
    if !keys.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    format!(
        "CREATE TABLE {} ({})",
        m.destination.quoted(),
        parts.join(", ")
    )
}

/// Records the mapping's destination table as pgmorph's own, so that its secondary indexes are
/// added after the copy (tables that existed before are left as they are). Entries of dropped
/// tables go.
pub fn owned_table_sql(m: &TableMapping) -> String {
    format!(
        "DELETE FROM pgmorph.owned_tables o WHERE NOT EXISTS \
         (SELECT 1 FROM pg_class c WHERE c.oid = o.relid); \
         INSERT INTO pgmorph.owned_tables (relid) VALUES ({}::regclass) ON CONFLICT DO NOTHING",
        quote_literal(&m.destination.quoted())
    )
}

/// Creates the destination table. With `rebuild`, an existing table is dropped first;
/// otherwise an existing table is kept if it has every mapped column.
pub async fn create_table(
    client: &Client,
    m: &TableMapping,
    rebuild: bool,
) -> Result<(), DdlError> {
    let what = format!("table {}", m.destination);
    if rebuild {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", m.destination.quoted()))
            .await
            .map_err(stmt(what.clone()))?;
    }
    let existing = destination_columns(client, m)
        .await
        .map_err(stmt(what.clone()))?;
    if existing.is_empty() {
        client
            .batch_execute(&in_transaction(&[create_table_sql(m), owned_table_sql(m)]))
            .await
            .map_err(stmt(what))?;
        return Ok(());
    }
    for c in &m.columns {
        if !existing.contains(&c.name) {
            return Err(DdlError::Incompatible {
                table: m.destination.to_string(),
                column: c.name.clone(),
            });
        }
    }
    Ok(())
}

/// The destination tables among `tables` that take binary values ([`TableMapping::binary_safe`])
/// but have a column of another type than the mapping's (typmods aside: a table that existed
/// before, or a source type change skipped): their values must cross as text. When the
/// destination cannot compare the types (older servers refuse some type names), every such
/// table.
pub async fn other_typed_tables(
    client: &Client,
    tables: &[std::sync::Arc<TableMapping>],
) -> HashSet<TableName> {
    let binary: Vec<&TableMapping> = tables
        .iter()
        .map(|m| &**m)
        .filter(|m| m.binary_safe())
        .collect();
    let (mut names, mut columns, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for m in &binary {
        for c in &m.columns {
            names.push(m.destination.quoted());
            columns.push(c.name.as_str());
            types.push(c.type_sql.as_str());
        }
    }
    let rows = client
        .query(
            "SELECT DISTINCT w.t FROM unnest($1::text[], $2::text[], $3::text[]) AS w(t, name, ty) \
             JOIN pg_attribute a ON a.attrelid = to_regclass(w.t) AND a.attname = w.name \
             WHERE a.attnum > 0 AND NOT a.attisdropped \
               AND a.atttypid IS DISTINCT FROM to_regtype(w.ty)",
            &[&names, &columns, &types],
        )
        .await;
    match rows {
        Ok(rows) => {
            let other: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
            binary
                .iter()
                .filter(|m| other.contains(&m.destination.quoted()))
                .map(|m| m.destination.clone())
                .collect()
        }
        Err(e) => {
            tracing::debug!(error = %e, "destination column types not compared");
            binary.iter().map(|m| m.destination.clone()).collect()
        }
    }
}

/// The column names of the mapping's destination table (empty if it does not exist).
pub async fn destination_columns(
    client: &Client,
    m: &TableMapping,
) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&m.destination.schema, &m.destination.name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// `ALTER TABLE ... ADD COLUMN` statements for mapped columns missing on the destination.
pub fn add_missing_columns_sql(m: &TableMapping, existing: &[String]) -> Vec<String> {
    m.columns
        .iter()
        .filter(|c| !existing.contains(&c.name))
        .map(|c| {
            format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                m.destination.quoted(),
                quote_ident(&c.name),
                c.type_sql
            )
        })
        .collect()
}

/// Whether no foreign key touches these destination tables and none has a user trigger, so the
/// order of changes across tables inside one transaction cannot matter.
pub async fn free_of_foreign_keys_and_triggers(
    client: &Client,
    tables: &[std::sync::Arc<TableMapping>],
) -> Result<bool, DdlError> {
    let names: Vec<String> = tables.iter().map(|m| m.destination.quoted()).collect();
    let row = client
        .query_one(
            "WITH t AS (SELECT to_regclass(n) AS oid FROM unnest($1::text[]) AS n) \
             SELECT (SELECT count(*) FROM pg_constraint c, t WHERE c.contype = 'f' \
                       AND (c.conrelid = t.oid OR c.confrelid = t.oid)) \
                  + (SELECT count(*) FROM pg_trigger g, t WHERE g.tgrelid = t.oid AND NOT g.tgisinternal) \
                  + (SELECT count(*) FROM pg_rewrite r, t WHERE r.ev_class = t.oid AND r.rulename <> '_RETURN')",
            &[&names],
        )
        .await
        .map_err(stmt("foreign key and trigger check"))?;
    Ok(row.get::<_, i64>(0) == 0)
}

/// The destination tables whose changes may be spread over several apply connections by key
/// (`apply.parallel`): a primary key on exactly the mapping's key columns, and no foreign key
/// (either side), trigger, rule, exclusion constraint or other unique index, so that changes of
/// different keys never wait for or depend on each other.
pub async fn spreadable_tables(
    client: &Client,
    tables: &[std::sync::Arc<TableMapping>],
) -> Result<std::collections::HashSet<TableName>, DdlError> {
    let tables: Vec<_> = tables
        .iter()
        .filter(|m| !m.skip && !m.key_indexes().is_empty())
        .collect();
    let names: Vec<String> = tables.iter().map(|m| m.destination.quoted()).collect();
    let rows = client
        .query(
            "SELECT n, (SELECT array_agg(a.attname::text ORDER BY a.attname) \
                        FROM pg_index i JOIN pg_attribute a \
                          ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                        WHERE i.indrelid = t.oid AND i.indisprimary) \
             FROM unnest($1::text[]) AS n, LATERAL (SELECT to_regclass(n) AS oid) t \
             WHERE t.oid IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.contype IN ('f', 'x') \
                               AND (c.conrelid = t.oid OR c.confrelid = t.oid)) \
               AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = t.oid AND NOT g.tgisinternal) \
               AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = t.oid AND r.rulename <> '_RETURN') \
               AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = t.oid OR h.inhparent = t.oid) \
               AND (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.oid AND i.indisunique) = 1",
            &[&names],
        )
        .await
        .map_err(stmt("reading which tables may be applied on several connections"))?;
    let mut out = std::collections::HashSet::new();
    for row in rows {
        let name: String = row.get(0);
        let Some(primary) = row.get::<_, Option<Vec<String>>>(1) else {
            continue;
        };
        let Some(m) = tables.iter().find(|m| m.destination.quoted() == name) else {
            continue;
        };
        let mut key: Vec<String> = m
            .key_indexes()
            .iter()
            .map(|&i| m.columns[i].name.clone())
            .collect();
        key.sort();
        if key == primary {
            out.insert(m.destination.clone());
        }
    }
    Ok(out)
}

/// The statements wrapped in one transaction, as one simple-query string.
pub fn in_transaction(statements: &[String]) -> String {
    let mut sql = String::from("BEGIN;");
    for s in statements {
        sql.push_str(s);
        sql.push(';');
    }
    sql.push_str("COMMIT;");
    sql
}

/// How the destination follows a changed mapping of one table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MappingChange {
    /// Statements that bring the existing table in line, in order.
    pub statements: Vec<String>,
    /// The table must be copied again (it was skipped before).
    pub needs_copy: bool,
}

/// The ALTER statements that turn the destination table of `old` into that of `new`: a moved or
/// renamed table, renamed and retyped columns, added columns (NULL in existing rows), and
/// columns no longer fed (kept, NOT NULL dropped).
pub fn mapping_change(old: &TableMapping, new: &TableMapping) -> MappingChange {
    let mut out = MappingChange::default();
    if new.skip {
        return out;
    }
    if old.skip {
        out.needs_copy = true;
        return out;
    }
    let mut table = old.destination.clone();
    if new.destination.schema != table.schema {
        out.statements.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&new.destination.schema)
        ));
        out.statements.push(format!(
            "ALTER TABLE {} SET SCHEMA {}",
            table.quoted(),
            quote_ident(&new.destination.schema)
        ));
        table.schema = new.destination.schema.clone();
    }
    if new.destination.name != table.name {
        out.statements.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            table.quoted(),
            quote_ident(&new.destination.name)
        ));
        table.name = new.destination.name.clone();
    }
    let t = table.quoted();
    let same_source = |a: &crate::model::MappedColumn, b: &crate::model::MappedColumn| match (
        a.source_index,
        b.source_index,
    ) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.name == b.name,
        _ => false,
    };
    for c in &new.columns {
        match old.columns.iter().find(|o| same_source(o, c)) {
            Some(o) => {
                if o.name != c.name {
                    out.statements.push(format!(
                        "ALTER TABLE {t} RENAME COLUMN {} TO {}",
                        quote_ident(&o.name),
                        quote_ident(&c.name)
                    ));
                }
                if o.type_sql != c.type_sql {
                    out.statements.push(format!(
                        "ALTER TABLE {t} ALTER COLUMN {} TYPE {} USING {}::{}",
                        quote_ident(&c.name),
                        c.type_sql,
                        quote_ident(&c.name),
                        c.type_sql
                    ));
                }
            }
            None => out.statements.push(format!(
                "ALTER TABLE {t} ADD COLUMN {} {}",
                quote_ident(&c.name),
                c.type_sql
            )),
        }
    }
    for o in &old.columns {
        if !new.columns.iter().any(|c| same_source(o, c)) && o.not_null && !o.is_key {
            out.statements.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {} DROP NOT NULL",
                quote_ident(&o.name)
            ));
        }
    }
    out
}

/// The SQL that creates a user type in `dest_schema`.
pub fn create_user_type_sql(dest_schema: &str, t: &UserType) -> String {
    let name = format!("{}.{}", quote_ident(dest_schema), quote_ident(t.name()));
    match t {
        UserType::Enum { labels, .. } => {
            let labels: Vec<String> = labels.iter().map(|l| quote_literal(l)).collect();
            format!("CREATE TYPE {name} AS ENUM ({})", labels.join(", "))
        }
        UserType::Domain {
            base_sql,
            not_null,
            checks,
            ..
        } => {
            let mut sql = format!("CREATE DOMAIN {name} AS {base_sql}");
            if *not_null {
                sql.push_str(" NOT NULL");
            }
            for c in checks {
                sql.push(' ');
                sql.push_str(c);
            }
            sql
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName, TableSchema};

    fn mapping() -> TableMapping {
        let col = |name: &str, ty: &str, key: bool| Column {
            name: name.into(),
            type_oid: 0,
            type_modifier: -1,
            type_sql: ty.into(),
            not_null: true,
            is_key: key,
        };
        TableMapping::identity(
            Arc::new(TableSchema {
                oid: 1,
                name: TableName::new("public", "orders"),
                columns: vec![
                    col("id", "integer", true),
                    col("cust", "integer", false),
                    col("note", "text", false),
                ],
                identity: ReplicaIdentity::Default,
                has_primary_key: true,
            }),
            "dst",
        )
    }

    #[test]
    fn renames_retypes_adds_and_releases_columns() {
        let old = mapping();
        let mut new = old.clone();
        new.destination = TableName::new("sales", "orders_v2");
        new.columns[1].name = "customer_id".into();
        new.columns[1].type_sql = "bigint".into();
        new.columns.remove(2);
        new.columns.push(crate::model::MappedColumn {
            name: "tag".into(),
            type_sql: "text".into(),
            source_index: None,
            not_null: false,
            is_key: false,
            changed_by: vec!["x".into()],
        });
        let change = mapping_change(&old, &new);
        assert_eq!(
            change.statements,
            vec![
                "CREATE SCHEMA IF NOT EXISTS \"sales\"",
                "ALTER TABLE \"dst\".\"orders\" SET SCHEMA \"sales\"",
                "ALTER TABLE \"sales\".\"orders\" RENAME TO \"orders_v2\"",
                "ALTER TABLE \"sales\".\"orders_v2\" RENAME COLUMN \"cust\" TO \"customer_id\"",
                "ALTER TABLE \"sales\".\"orders_v2\" ALTER COLUMN \"customer_id\" TYPE bigint USING \"customer_id\"::bigint",
                "ALTER TABLE \"sales\".\"orders_v2\" ADD COLUMN \"tag\" text",
                "ALTER TABLE \"sales\".\"orders_v2\" ALTER COLUMN \"note\" DROP NOT NULL",
            ]
        );
        assert!(!change.needs_copy);
        assert_eq!(mapping_change(&old, &old), MappingChange::default());
    }
}
