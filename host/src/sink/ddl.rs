//! Destination DDL: the destination schema, user types and mapped tables.

use tokio_postgres::Client;

use crate::model::{quote_ident, TableMapping};
use crate::source::catalog::{create_user_type_sql, UserType};

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
            .batch_execute(&create_table_sql(m))
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
