//! The units of a table split into page ranges: a range copied into the emptied table, and,
//! when an interrupted copy resumes, ranges merged by key and the keys the source lost removed.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};

use super::{
    dst_err, finish, log_finished, stream_rows, write_dead_letters, SnapshotError, SnapshotJob,
    Streamed, TableCopy, SEND_CHUNK,
};
use crate::model::TableMapping;
use crate::source::copy_out::{self, RowFilter};
use crate::source::ranges::PageRange;
use std::sync::atomic::Ordering;

/// One worker's connections and the table a range unit belongs to.
pub(super) struct RangeCtx<'a> {
    pub(super) job: &'a SnapshotJob,
    pub(super) reader: &'a tokio_postgres::Client,
    pub(super) dest: &'a tokio_postgres::Client,
    pub(super) table: &'a TableCopy,
    /// The snapshot the reader runs under (`pg_current_snapshot()` text).
    pub(super) snapshot: &'a str,
}

impl RangeCtx<'_> {
    fn err(&self) -> impl Fn(tokio_postgres::Error) -> SnapshotError + '_ {
        dst_err(&self.table.name)
    }

    /// The first unit of a table to start records the copy as started and, unless it
    /// resumes, empties the table (committed, before any unit writes).
    async fn start(&self) -> Result<Instant, SnapshotError> {
        let (job, table) = (self.job, self.table);
        let mapping = &table.mapping;
        let started = *table
            .started
            .get_or_try_init(|| async {
                job.state
                    .set_table_phase(&table.name, "copying", Some(0))
                    .await?;
                tracing::info!(
                    table = %table.name,
                    destination = %mapping.destination,
                    units = table.ranges,
                    resume = table.resume,
                    "snapshot copy started"
                );
                if !table.resume {
                    self.dest
                        .batch_execute(&format!("TRUNCATE {}", mapping.destination.quoted()))
                        .await
                        .map_err(dst_err(&table.name))?;
                }
                Ok::<_, SnapshotError>(Instant::now())
            })
            .await?;
        Ok(started)
    }

    /// Copies one page range of a split table in its own destination transaction, and
    /// records it as copied in the same transaction.
    pub(super) async fn copy_range(&self, range: &PageRange) -> Result<u64, SnapshotError> {
        let started = self.start().await?;
        self.dest.batch_execute("BEGIN").await.map_err(self.err())?;
        let target = self.table.mapping.destination.quoted();
        let streamed = stream_rows(
            self.job,
            self.reader,
            self.dest,
            &self.table.mapping,
            &target,
            RowFilter::range(range),
        )
        .await?;
        self.commit_unit(range, streamed, started).await
    }

    /// In one transaction that also records the range as copied under this snapshot: with
    /// `copy_unchanged`, copies the range's rows `since` saw straight into the destination;
    /// then reads the rows written since into a staging table and merges them into the
    /// destination by key (insert, or update the row with that key).
    pub(super) async fn merge(
        &self,
        range: &PageRange,
        since: &str,
        copy_unchanged: bool,
    ) -> Result<u64, SnapshotError> {
        let started = self.start().await?;
        let mapping = &self.table.mapping;
        self.dest
            .batch_execute(&format!(
                "BEGIN; CREATE TEMP TABLE pgmorph_stage (LIKE {}) ON COMMIT DROP",
                mapping.destination.quoted()
            ))
            .await
            .map_err(self.err())?;
        let mut copied = Streamed {
            rows: 0,
            skipped: 0,
            dead_letters: Vec::new(),
        };
        if copy_unchanged {
            let unchanged = RowFilter {
                range,
                changed_since: None,
                unchanged_since: Some(since),
            };
            let target = mapping.destination.quoted();
            copied = stream_rows(
                self.job,
                self.reader,
                self.dest,
                mapping,
                &target,
                unchanged,
            )
            .await?;
        }
        let changed = RowFilter {
            range,
            changed_since: Some(since),
            unchanged_since: None,
        };
        let merged = stream_rows(
            self.job,
            self.reader,
            self.dest,
            mapping,
            "pgmorph_stage",
            changed,
        )
        .await?;
        self.dest
            .batch_execute(&merge_sql(mapping, "pgmorph_stage"))
            .await
            .map_err(self.err())?;
        tracing::debug!(table = %self.table.name, %range, copied = copied.rows, merged = merged.rows, "page range merged");
        copied.rows += merged.rows;
        self.commit_unit(range, copied, started).await
    }

    /// Removes the destination rows whose key the source no longer has: the source's keys
    /// are read into a staging table under this snapshot, in one transaction.
    pub(super) async fn sync_keys(&self) -> Result<u64, SnapshotError> {
        let started = self.start().await?;
        let mapping = &self.table.mapping;
        let err = self.err();
        let keys: Vec<String> = mapping
            .columns
            .iter()
            .filter(|c| c.is_key)
            .map(|c| crate::model::quote_ident(&c.name))
            .collect();
        let dest_table = mapping.destination.quoted();
        self.dest
            .batch_execute(&format!(
                "BEGIN; CREATE TEMP TABLE pgmorph_keys ON COMMIT DROP AS \
                 SELECT {} FROM {dest_table} WITH NO DATA",
                keys.join(", ")
            ))
            .await
            .map_err(&err)?;
        let binary = copy_out::binary_safe(mapping);
        let sink = self
            .dest
            .copy_in::<_, Bytes>(&format!(
                "COPY pgmorph_keys ({}) FROM STDIN{}",
                keys.join(", "),
                if binary { " (FORMAT binary)" } else { "" }
            ))
            .await
            .map_err(&err)?;
        futures_util::pin_mut!(sink);
        let stream = copy_out::copy_keys(self.reader, mapping, binary)
            .await
            .map_err(|e| SnapshotError::Row {
                table: self.table.name.clone(),
                message: e.to_string(),
            })?;
        futures_util::pin_mut!(stream);
        let mut out = BytesMut::with_capacity(SEND_CHUNK * 2);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| SnapshotError::Source {
                table: self.table.name.clone(),
                source,
            })?;
            out.extend_from_slice(&chunk);
            if out.len() >= SEND_CHUNK {
                sink.send(out.split().freeze()).await.map_err(&err)?;
            }
        }
        if !out.is_empty() {
            sink.send(out.split().freeze()).await.map_err(&err)?;
        }
        sink.finish().await.map_err(&err)?;
        let matching: Vec<String> = keys.iter().map(|k| format!("k.{k} = d.{k}")).collect();
        self.dest
            .batch_execute("ANALYZE pgmorph_keys")
            .await
            .map_err(&err)?;
        let removed = self
            .dest
            .execute(
                &format!(
                    "DELETE FROM {dest_table} d WHERE NOT EXISTS \
                     (SELECT 1 FROM pgmorph_keys k WHERE {})",
                    matching.join(" AND ")
                ),
                &[],
            )
            .await
            .map_err(&err)?;
        self.dest.batch_execute("COMMIT").await.map_err(&err)?;
        tracing::info!(table = %self.table.name, removed, "rows deleted on the source since the interrupted copy removed");
        self.unit_done(0, 0, 0, started).await?;
        Ok(0)
    }

    /// Records the range, commits the unit's transaction and counts the unit done.
    async fn commit_unit(
        &self,
        range: &PageRange,
        streamed: Streamed,
        started: Instant,
    ) -> Result<u64, SnapshotError> {
        let (job, dest, table) = (self.job, self.dest, self.table);
        let err = self.err();
        write_dead_letters(job, dest, &table.name, &streamed.dead_letters).await?;
        // Progress for `pgmorph status`, committed with the range's rows.
        let rows_text = streamed.rows.to_string();
        dest.execute(
            "UPDATE pgmorph.tables SET rows_copied = rows_copied + $3::text::bigint \
             WHERE connector = $1 AND source_table = $2 AND phase = 'copying'",
            &[&job.state_name(), &table.name, &rows_text],
        )
        .await
        .map_err(&err)?;
        let first = range.start.unwrap_or(0) as i64;
        let end = range.end.map(|e| e as i64);
        dest.execute(
            crate::state::store_sql::RANGE_COPIED,
            &[
                &job.state_name(),
                &table.name,
                &first,
                &end,
                &self.snapshot,
                &super::layout(&table.mapping),
                &table.mapping.destination.quoted(),
            ],
        )
        .await
        .map_err(&err)?;
        dest.batch_execute("COMMIT").await.map_err(&err)?;
        tracing::debug!(table = %table.name, %range, rows = streamed.rows, "page range copied");
        let dead = streamed.dead_letters.len() as u64;
        self.unit_done(streamed.rows, streamed.skipped, dead, started)
            .await?;
        Ok(streamed.rows)
    }

    /// Counts a committed unit; the table's last one creates the indexes and records the
    /// table as copied.
    async fn unit_done(
        &self,
        rows: u64,
        skipped: u64,
        dead: u64,
        started: Instant,
    ) -> Result<(), SnapshotError> {
        let (job, dest, table) = (self.job, self.dest, self.table);
        let err = self.err();
        let rows = table.rows.fetch_add(rows, Ordering::SeqCst) + rows;
        let skipped = table.skipped.fetch_add(skipped, Ordering::SeqCst) + skipped;
        let dead = table.dead_lettered.fetch_add(dead, Ordering::SeqCst) + dead;
        // Every other unit has committed when the count reaches zero.
        if table.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            dest.batch_execute("BEGIN").await.map_err(&err)?;
            finish(job, dest, table, rows).await?;
            dest.batch_execute("COMMIT").await.map_err(&err)?;
            log_finished(table, started, rows, skipped, dead);
        }
        Ok(())
    }
}

/// `INSERT ... SELECT` from `stage` into the mapping's destination, updating the row with
/// the same key where there is one.
fn merge_sql(mapping: &TableMapping, stage: &str) -> String {
    let q = |c: &crate::model::MappedColumn| crate::model::quote_ident(&c.name);
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
