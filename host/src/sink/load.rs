//! Loading snapshot data into the destination. Each snapshot worker owns one [`Loader`]: a
//! destination connection on which every table, or page range of a split table, is written
//! with COPY in a transaction of its own, together with what records it (the range or the
//! table as copied, progress, dead letters), so a crash keeps both or neither.

use bytes::Bytes;
use tokio_postgres::{Client, CopyInSink};

use super::dead_letters;
use super::indexes;
use crate::config::ConnectionSettings;
use crate::model::{quote_ident, Lsn, PageRange, SourceIndex, TableMapping, TableName};
use crate::state::store_sql;
use crate::transform::DeadLetter;

/// Where a COPY writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Into {
    /// The mapping's destination table.
    Table,
    /// The transaction's staging table of rows to merge by key ([`Loader::begin_merge`]).
    Stage,
}

/// The staging tables of a resumed copy (dropped at commit).
const STAGE: &str = "pgmorph_stage";
const KEYS: &str = "pgmorph_keys";

/// A snapshot worker's destination connection.
pub struct Loader {
    client: Client,
    connector: String,
}

/// What records one committed page range.
pub struct RangeRecord<'a> {
    /// The source table's name.
    pub table: &'a str,
    /// The pages.
    pub range: &'a PageRange,
    /// The snapshot the rows were read under (`pg_current_snapshot()` text).
    pub snapshot: &'a str,
    /// Rows written.
    pub rows: u64,
}

/// The destination table and columns a copy writes (recorded with each copied range: a copy
/// resumes only into the same layout).
pub fn layout(mapping: &TableMapping) -> String {
    let columns: Vec<String> = mapping
        .columns
        .iter()
        .map(|c| {
            let from = c
                .source_index
                .map(|i| mapping.source.columns[i].name.as_str());
            format!(
                "{} {} <- {}",
                c.name,
                c.type_sql,
                from.unwrap_or("(computed)")
            )
        })
        .collect();
    format!("{} ({})", mapping.destination, columns.join(", "))
}

impl Loader {
    /// Opens the worker's connection; `async_commit` commits with `synchronous_commit = off`.
    pub async fn connect(
        settings: &ConnectionSettings,
        connector: &str,
        async_commit: bool,
    ) -> Result<Self, tokio_postgres::Error> {
        let client = settings.connect("pgmorph snapshot").await?;
        if async_commit {
            let _ = client.batch_execute("SET synchronous_commit = off").await;
        }
        Ok(Self {
            client,
            connector: connector.to_string(),
        })
    }

    /// Opens a transaction.
    pub async fn begin(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("BEGIN").await
    }

    /// Commits the open transaction.
    pub async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("COMMIT").await
    }

    /// Empties the mapping's destination table (in the open transaction, if any).
    pub async fn truncate(&self, mapping: &TableMapping) -> Result<(), tokio_postgres::Error> {
        let sql = format!("TRUNCATE {}", mapping.destination.quoted());
        self.client.batch_execute(&sql).await
    }

    /// Starts `COPY ... FROM STDIN` of the mapping's columns into `into`.
    pub async fn copy_in(
        &self,
        mapping: &TableMapping,
        into: Into,
        binary: bool,
    ) -> Result<CopyInSink<Bytes>, tokio_postgres::Error> {
        let cols: Vec<String> = mapping
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let target = match into {
            Into::Table => mapping.destination.quoted(),
            Into::Stage => STAGE.to_string(),
        };
        self.copy_into(&target, &cols, binary).await
    }

    async fn copy_into(
        &self,
        target: &str,
        cols: &[String],
        binary: bool,
    ) -> Result<CopyInSink<Bytes>, tokio_postgres::Error> {
        let format = if binary { " (FORMAT binary)" } else { "" };
        let sql = format!("COPY {target} ({}) FROM STDIN{format}", cols.join(", "));
        self.client.copy_in(&sql).await
    }

    /// Opens a transaction with an empty staging table shaped like the destination table,
    /// for rows to merge by key ([`Into::Stage`], then [`Self::merge_stage`]).
    pub async fn begin_merge(&self, mapping: &TableMapping) -> Result<(), tokio_postgres::Error> {
        let sql = format!(
            "BEGIN; CREATE TEMP TABLE {STAGE} (LIKE {}) ON COMMIT DROP",
            mapping.destination.quoted()
        );
        self.client.batch_execute(&sql).await
    }

    /// Merges the staging table into the destination table by key.
    pub async fn merge_stage(&self, mapping: &TableMapping) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(&merge_sql(mapping, STAGE)).await
    }

    /// Opens a transaction with an empty table of the destination's keys, and starts copying
    /// the source's keys into it ([`Self::delete_missing_keys`] then removes the others).
    pub async fn begin_key_sync(
        &self,
        mapping: &TableMapping,
        binary: bool,
    ) -> Result<CopyInSink<Bytes>, tokio_postgres::Error> {
        let keys = key_columns(mapping);
        let sql = format!(
            "BEGIN; CREATE TEMP TABLE {KEYS} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA",
            keys.join(", "),
            mapping.destination.quoted()
        );
        self.client.batch_execute(&sql).await?;
        self.copy_into(KEYS, &keys, binary).await
    }

    /// Deletes the destination rows whose key is not among the copied keys; returns how many.
    pub async fn delete_missing_keys(
        &self,
        mapping: &TableMapping,
    ) -> Result<u64, tokio_postgres::Error> {
        let matching: Vec<String> = key_columns(mapping)
            .iter()
            .map(|k| format!("k.{k} = d.{k}"))
            .collect();
        self.client
            .batch_execute(&format!("ANALYZE {KEYS}"))
            .await?;
        let sql = format!(
            "DELETE FROM {} d WHERE NOT EXISTS (SELECT 1 FROM {KEYS} k WHERE {})",
            mapping.destination.quoted(),
            matching.join(" AND ")
        );
        self.client.execute(&sql, &[]).await
    }

    /// Writes rows a plugin could not process, in the open transaction.
    pub async fn dead_letters(
        &self,
        table: &str,
        rows: &[DeadLetter],
    ) -> Result<(), tokio_postgres::Error> {
        for d in rows {
            let params = dead_letters::params(&self.connector, table, "snapshot", "0/0", d);
            self.client
                .execute_raw(dead_letters::INSERT, params.iter())
                .await?;
        }
        Ok(())
    }

    /// Records a page range of the mapping's table as copied, and its rows as progress, in
    /// the open transaction.
    pub async fn record_range(
        &self,
        mapping: &TableMapping,
        r: &RangeRecord<'_>,
    ) -> Result<(), tokio_postgres::Error> {
        let rows = r.rows.to_string();
        self.client
            .execute(store_sql::ROWS_COPIED, &[&self.connector, &r.table, &rows])
            .await?;
        let first = r.range.start.unwrap_or(0) as i64;
        let end = r.range.end.map(|e| e as i64);
        let (layout, dest) = (layout(mapping), mapping.destination.quoted());
        self.client
            .execute(
                store_sql::RANGE_COPIED,
                &[
                    &self.connector,
                    &r.table,
                    &first,
                    &end,
                    &r.snapshot,
                    &layout,
                    &dest,
                ],
            )
            .await?;
        Ok(())
    }

    /// Adds the rows of one committed piece of a table's copy (a leaf partition's page range)
    /// to its progress, without recording the range for resumption.
    pub async fn record_rows(&self, table: &str, rows: u64) -> Result<(), tokio_postgres::Error> {
        let rows = rows.to_string();
        self.client
            .execute(store_sql::ROWS_COPIED, &[&self.connector, &table, &rows])
            .await?;
        Ok(())
    }

    /// In the table's last transaction: creates its secondary indexes (when pgmorph created
    /// the table) and records it as copied with its sync position.
    pub async fn finish_table(
        &self,
        table: &str,
        mapping: &TableMapping,
        secondary: &[SourceIndex],
        rows: u64,
        sync_lsn: Lsn,
    ) -> Result<(), tokio_postgres::Error> {
        let dest = mapping.destination.quoted();
        if !secondary.is_empty() && indexes::owns_table(&self.client, &dest).await? {
            indexes::create(&self.client, mapping, secondary).await?;
        }
        let (rows, sync) = (rows.to_string(), sync_lsn.to_string());
        self.client
            .execute(
                store_sql::TABLE_COPIED,
                &[&self.connector, &table, &rows, &sync],
            )
            .await?;
        // Ranges are kept only while a copy is unfinished: an interrupted one resumes from them.
        self.client
            .execute(store_sql::FORGET_RANGES, &[&self.connector, &table])
            .await?;
        Ok(())
    }
}

/// The destination table's file, if the table exists: a table truncated, dropped or
/// rewritten since a range was copied into it has another.
pub async fn relation_file(
    client: &Client,
    table: &TableName,
) -> Result<Option<u32>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_relation_filenode(to_regclass($1))",
            &[&table.quoted()],
        )
        .await?;
    Ok(row.get(0))
}

fn key_columns(mapping: &TableMapping) -> Vec<String> {
    mapping
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| quote_ident(&c.name))
        .collect()
}

/// `INSERT ... SELECT` from `stage` into the mapping's destination, updating the row with
/// the same key where there is one.
fn merge_sql(mapping: &TableMapping, stage: &str) -> String {
    let q = |c: &crate::model::MappedColumn| quote_ident(&c.name);
    let cols: Vec<String> = mapping.columns.iter().map(q).collect();
    let keys: Vec<String> = mapping.columns.iter().filter(|c| c.is_key).map(q).collect();
    let sets: Vec<String> = mapping
        .columns
        .iter()
        .filter(|c| !c.is_key)
        .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
        .collect();
    let action = if sets.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", sets.join(", "))
    };
    format!(
        "INSERT INTO {} ({cols}) OVERRIDING SYSTEM VALUE SELECT {cols} FROM {stage} \
         ON CONFLICT ({}) DO {action}",
        mapping.destination.quoted(),
        keys.join(", "),
        cols = cols.join(", ")
    )
}
