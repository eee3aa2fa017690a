//! The row path of a snapshot: COPY text parsed into rows, passed through the row step in
//! batches and encoded again, one batch in the row step while the next one is read.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::{SnapshotError, ROW_BATCH};
use crate::copy_text::{self, LineSplitter};
use crate::model::{Cell, Op, Provenance, RowChange, TableMapping};
use crate::transform::{
    start_row_step, DeadLetter, RowStepTask, SharedTransform, TableBatch, MAX_BATCH_BYTES,
};

/// Rows of a table whose rows the transform changes: parsed, transformed, re-encoded. One
/// batch's row step runs while the next batch is read.
pub(super) struct RowPath {
    mapping: Arc<TableMapping>,
    splitter: LineSplitter,
    pub(super) batch: Vec<RowChange>,
    /// Bytes of COPY text in `batch`.
    batch_bytes: usize,
    /// Columns that COPY reads (the source-fed ones).
    fed_columns: usize,
    /// The previous batch's row step.
    running: Option<RowStepTask>,
    /// Where the rows come from; `row` counts the rows handed to the row step so far.
    at: Provenance,
}

/// Rows written, rows skipped and rows dead-lettered by finished row steps.
pub(super) type StepCounts = (u64, u64, Vec<DeadLetter>);

impl RowPath {
    pub(super) fn new(mapping: Arc<TableMapping>, at: Provenance) -> Self {
        let fed_columns = mapping
            .columns
            .iter()
            .filter(|c| c.source_index.is_some())
            .count();
        Self {
            batch_bytes: 0,
            fed_columns,
            mapping,
            splitter: LineSplitter::default(),
            batch: Vec::with_capacity(ROW_BATCH),
            running: None,
            at,
        }
    }

    pub(super) fn feed(&mut self, chunk: &Bytes) -> Result<(), SnapshotError> {
        let mapping = &self.mapping;
        let batch = &mut self.batch;
        let batch_bytes = &mut self.batch_bytes;
        let fed = self.fed_columns;
        let computed = fed < mapping.columns.len();
        self.splitter.feed(chunk, |line| {
            let values = copy_text::decode_line(line, fed).map_err(|e| SnapshotError::Row {
                table: mapping.source.name.to_string(),
                message: e.to_string(),
            })?;
            if values.len() != fed {
                return Err(SnapshotError::Row {
                    table: mapping.source.name.to_string(),
                    message: format!("COPY sent {} values for {fed} columns", values.len()),
                });
            }
            // COPY read only source-fed columns; computed ones start as NULL.
            let row = if computed {
                let mut values = values.into_iter();
                mapping
                    .columns
                    .iter()
                    .map(|c| match c.source_index {
                        Some(_) => values.next().unwrap_or(Cell::Null),
                        None => Cell::Null,
                    })
                    .collect()
            } else {
                values
            };
            *batch_bytes += line.len();
            batch.push(RowChange {
                op: Op::Snapshot,
                old: None,
                new: Some(row),
            });
            Ok(())
        })
    }

    /// Whether the gathered batch is due for the row step: [`ROW_BATCH`] rows, or
    /// [`MAX_BATCH_BYTES`] of COPY text.
    pub(super) fn due(&self) -> bool {
        self.batch.len() >= ROW_BATCH || self.batch_bytes >= MAX_BATCH_BYTES
    }

    /// Writes out the previous batch's result (waiting for it), then starts the row step of
    /// the batch gathered since.
    pub(super) async fn run(
        &mut self,
        transform: &SharedTransform,
        out: &mut BytesMut,
    ) -> Result<StepCounts, SnapshotError> {
        let done = self.settle(out).await?;
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(ROW_BATCH));
            self.batch_bytes = 0;
            let at = self.at;
            self.at.row += batch.len() as u64;
            let batch = TableBatch::new(Arc::clone(&self.mapping), batch).at(at);
            self.running = Some(start_row_step(transform, vec![batch]));
        }
        Ok(done)
    }

    /// Waits for the running row step, if any, and encodes the rows it kept into `out`.
    pub(super) async fn settle(&mut self, out: &mut BytesMut) -> Result<StepCounts, SnapshotError> {
        let Some(task) = self.running.take() else {
            return Ok((0, 0, Vec::new()));
        };
        let batches = task.finish().await.map_err(|e| SnapshotError::Row {
            table: self.mapping.source.name.to_string(),
            message: e.source.to_string(),
        })?;
        let (mut n, mut skipped, mut dead) = (0, 0, Vec::new());
        for batch in batches {
            n += batch.changes.len() as u64;
            for change in batch.changes {
                if let Some(row) = change.new {
                    copy_text::encode_row(out, &row);
                }
            }
            skipped += batch.outcome.skipped;
            dead.extend(batch.outcome.dead_letters);
        }
        Ok((n, skipped, dead))
    }
}
