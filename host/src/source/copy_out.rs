//! Reading tables under the exported snapshot with `COPY ... TO STDOUT`.

use tokio_postgres::{Client, CopyOutStream};

use super::ranges::PageRange;
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

/// Whether a table can travel in COPY's binary format: no row step, every destination column
/// fed by a source column of the same type, and every type one whose binary form does not name
/// a source-specific type OID (built-in types and their arrays, enums and domains).
pub fn binary_safe(mapping: &TableMapping) -> bool {
    /// OIDs below this are built in and the same on every server.
    const FIRST_NORMAL_OID: u32 = 16384;
    !mapping.transforms_rows
        && mapping.columns.iter().all(|c| match c.source_index {
            None => false,
            Some(i) => {
                let s = &mapping.source.columns[i];
                s.type_sql == c.type_sql
                    && (s.type_oid < FIRST_NORMAL_OID
                        || (!c.type_sql.ends_with("[]") && c.type_sql != "text"))
            }
        })
}

/// Streams the mapped source columns of a table (or of one page range of it), in destination
/// order, in COPY text format (or binary with `binary`).
pub async fn copy_table(
    client: &Client,
    mapping: &TableMapping,
    binary: bool,
    range: &PageRange,
) -> Result<CopyOutStream, CopyOutError> {
    Ok(client
        .copy_out(&copy_out_sql(mapping, binary, range))
        .await?)
}

/// The `COPY ... TO STDOUT` statement of [`copy_table`]: the table itself when whole, else a
/// query of the range's pages (of this table only, not of inheriting children).
fn copy_out_sql(mapping: &TableMapping, binary: bool, range: &PageRange) -> String {
    let cols: Vec<String> = mapping
        .columns
        .iter()
        .filter_map(|c| c.source_index)
        .map(|i| quote_ident(&mapping.source.columns[i].name))
        .collect();
    let format = if binary { " (FORMAT binary)" } else { "" };
    let table = mapping.source.name.quoted();
    if range.is_whole() {
        format!("COPY {table} ({}) TO STDOUT{format}", cols.join(", "))
    } else {
        format!(
            "COPY (SELECT {} FROM ONLY {table} WHERE {}) TO STDOUT{format}",
            cols.join(", "),
            range.predicate()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName, TableSchema};

    #[test]
    fn a_range_reads_only_its_pages_of_the_table_itself() {
        let col = |name: &str| Column {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_sql: "integer".into(),
            not_null: false,
            is_key: name == "id",
        };
        let mapping = TableMapping::identity(
            Arc::new(TableSchema {
                oid: 1,
                name: TableName::new("public", "t"),
                columns: vec![col("id"), col("n")],
                identity: ReplicaIdentity::Default,
                has_primary_key: true,
            }),
            "dst",
        );
        assert_eq!(
            copy_out_sql(&mapping, false, &PageRange::WHOLE),
            "COPY \"public\".\"t\" (\"id\", \"n\") TO STDOUT"
        );
        let last = PageRange {
            start: Some(10),
            end: None,
        };
        assert_eq!(
            copy_out_sql(&mapping, true, &last),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t\" WHERE ctid >= '(10,0)'::tid) \
             TO STDOUT (FORMAT binary)"
        );
    }
}
