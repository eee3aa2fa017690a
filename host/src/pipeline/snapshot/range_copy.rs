//! The units of a table split into page ranges: a range copied into the emptied table, and,
//! when an interrupted copy resumes, ranges merged by key and the keys the source lost removed.

use std::time::Instant;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};

use super::{
    dst_err, log_finished, stream_rows, SnapshotError, SnapshotJob, Streamed, TableCopy, SEND_CHUNK,
};
use crate::model::PageRange;
use crate::sink::load::{Into, Loader, RangeRecord};
use crate::source::copy_out::{self, RowFilter};
use crate::transform::SharedTransform;
use std::sync::atomic::Ordering;

/// One worker's connections and plugin instances, and the table a unit belongs to.
pub(super) struct RangeCtx<'a> {
    pub(super) job: &'a SnapshotJob,
    pub(super) reader: &'a tokio_postgres::Client,
    pub(super) dest: &'a Loader,
    pub(super) table: &'a TableCopy,
    /// The snapshot the reader runs under (`pg_current_snapshot()` text).
    pub(super) snapshot: &'a str,
    /// The transform of this unit's rows (the worker's own plugin instances).
    pub(super) transform: &'a SharedTransform,
}

impl RangeCtx<'_> {
    pub(super) fn err(&self) -> impl Fn(tokio_postgres::Error) -> SnapshotError + '_ {
        dst_err(&self.table.name)
    }

    /// The first unit of a table to start records the copy as started and, unless it
    /// resumes, empties the table (committed, before any unit writes).
    pub(super) async fn start(&self) -> Result<Instant, SnapshotError> {
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
                        .truncate(mapping)
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
        self.dest.begin().await.map_err(self.err())?;
        let streamed = stream_rows(self, Into::Table, RowFilter::range(range)).await?;
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
        self.dest.begin_merge(mapping).await.map_err(self.err())?;
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
                relation: None,
                published: None,
            };
            copied = stream_rows(self, Into::Table, unchanged).await?;
        }
        let changed = RowFilter {
            range,
            changed_since: Some(since),
            unchanged_since: None,
            relation: None,
            published: None,
        };
        let merged = stream_rows(self, Into::Stage, changed).await?;
        self.dest.merge_stage(mapping).await.map_err(self.err())?;
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
        let binary = self.job.binary(mapping);
        let sink = self
            .dest
            .begin_key_sync(mapping, binary)
            .await
            .map_err(&err)?;
        futures_util::pin_mut!(sink);
        let published = self.job.row_filters.get(&mapping.source.name);
        let stream =
            copy_out::copy_keys(self.reader, mapping, binary, published.map(String::as_str))
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
        let removed = self.dest.delete_missing_keys(mapping).await.map_err(&err)?;
        self.dest.commit().await.map_err(&err)?;
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
        let (dest, table) = (self.dest, self.table);
        let err = self.err();
        dest.dead_letters(&table.name, &streamed.dead_letters)
            .await
            .map_err(&err)?;
        // Progress for `pgmorph status`, committed with the range's rows.
        let record = RangeRecord {
            table: &table.name,
            range,
            snapshot: self.snapshot,
            rows: streamed.rows,
        };
        dest.record_range(&table.mapping, &record)
            .await
            .map_err(&err)?;
        dest.commit().await.map_err(&err)?;
        tracing::debug!(table = %table.name, %range, rows = streamed.rows, "page range copied");
        let dead = streamed.dead_letters.len() as u64;
        self.unit_done(streamed.rows, streamed.skipped, dead, started)
            .await?;
        Ok(streamed.rows)
    }

    /// Counts a committed unit; the table's last one creates the indexes and records the
    /// table as copied.
    pub(super) async fn unit_done(
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
            dest.begin().await.map_err(&err)?;
            dest.finish_table(
                &table.name,
                &table.mapping,
                &table.indexes,
                rows,
                job.sync_lsn,
            )
            .await
            .map_err(&err)?;
            dest.commit().await.map_err(&err)?;
            table.progress.finish(rows);
            log_finished(table, started, rows, skipped, dead);
        }
        Ok(())
    }
}
