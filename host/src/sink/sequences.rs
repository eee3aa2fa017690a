//! Setting sequence values on the destination: the sequence a destination column owns (of a
//! `serial` or identity column), else one created with the source's definition, which a column
//! without a default then uses.

use tokio_postgres::Client;

use crate::model::{quote_ident, quote_literal, SequenceTarget};

/// Sets the destination sequence of `target` to the source's value; returns the destination
/// sequence's name, or `None` when the destination table is missing.
pub async fn apply(
    client: &Client,
    target: &SequenceTarget,
) -> Result<Option<String>, tokio_postgres::Error> {
    let dest = match &target.column {
        Some((table, column)) => {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
                .await?
                .get(0);
            if !exists {
                return Ok(None);
            }
            match owned_sequence(client, &table.quoted(), column).await? {
                Some(owned) => owned,
                None => create_for_column(client, target, &table.quoted(), column).await?,
            }
        }
        None => {
            create(client, target).await?;
            target.dest.quoted()
        }
    };
    client
        .execute(
            "SELECT setval($1::text::regclass, $2, $3)",
            &[&dest, &target.last_value, &target.is_called],
        )
        .await?;
    Ok(Some(dest))
}

/// The sequence a column owns (`pg_get_serial_sequence`), quoted.
async fn owned_sequence(
    client: &Client,
    table: &str,
    column: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT pg_get_serial_sequence($1, $2)", &[&table, &column])
        .await?;
    Ok(row.get(0))
}

async fn create(client: &Client, target: &SequenceTarget) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE SEQUENCE IF NOT EXISTS {} {}",
            target.dest.quoted(),
            target.definition
        ))
        .await
}

/// Creates the sequence for a column that owns none and, when the column has no default (a
/// table pgmorph created), makes it the column's default and owner: inserts on the destination
/// draw from it after a cut-over.
async fn create_for_column(
    client: &Client,
    target: &SequenceTarget,
    table: &str,
    column: &str,
) -> Result<String, tokio_postgres::Error> {
    create(client, target).await?;
    let dest = target.dest.quoted();
    let bare: bool = client
        .query_one(
            "SELECT NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' \
             FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
            &[&table, &column],
        )
        .await?
        .get(0);
    if bare {
        let column = quote_ident(column);
        client
            .batch_execute(&format!(
                "ALTER SEQUENCE {dest} OWNED BY {table}.{column}; \
                 ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT nextval({}::regclass)",
                quote_literal(&dest)
            ))
            .await?;
    }
    Ok(dest)
}
