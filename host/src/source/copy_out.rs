//! Reading tables under the exported snapshot with `COPY ... TO STDOUT`.

use tokio_postgres::{Client, CopyOutStream};

use crate::config::ConnectionSettings;
use crate::model::{quote_ident, quote_literal, TableMapping};

/// A snapshot reader could not be opened or a COPY failed.
#[derive(Debug, thiserror::Error)]
#[error("snapshot read from the source failed: {0}")]
pub struct CopyOutError(#[from] tokio_postgres::Error);

/// Opens a connection inside a repeatable-read transaction that imported `snapshot`.
pub async fn open_reader(
    settings: &ConnectionSettings,
    snapshot: &str,
) -> Result<Client, CopyOutError> {
    let (client, conn) = settings
        .sql_config("pgmorph snapshot")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "snapshot reader connection closed");
        }
    });
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .await?;
    Ok(client)
}

/// Streams the mapped source columns of a table, in destination order, in COPY text format.
pub async fn copy_table(
    client: &Client,
    mapping: &TableMapping,
) -> Result<CopyOutStream, CopyOutError> {
    let cols: Vec<String> = mapping
        .columns
        .iter()
        .filter_map(|c| c.source_index)
        .map(|i| quote_ident(&mapping.source.columns[i].name))
        .collect();
    let sql = format!(
        "COPY {} ({}) TO STDOUT",
        mapping.source.name.quoted(),
        cols.join(", ")
    );
    Ok(client.copy_out(&sql).await?)
}
