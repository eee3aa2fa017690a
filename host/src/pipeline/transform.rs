//! The seam between replication and reshaping: a per-table mapping step and a per-batch row step.
//!
//! The replication core calls [`Transform::map_table`] once per relation version and
//! [`Transform::transform_rows`] once per batch of row changes of one table. [`Identity`] is the
//! transform used when no plugin is configured.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::model::{RowChange, TableMapping, TableSchema};

/// The transform the pipeline's tasks share (swapped whole on a plugin reload).
pub type SharedTransform = Arc<Mutex<Box<dyn Transform>>>;

/// A transform step failed; `policy` says what the pipeline must do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransformError {
    /// What went wrong, naming the plugin and table.
    pub message: String,
}

/// The result of the row step for one batch.
#[derive(Debug, Default)]
pub struct RowOutcome {
    /// Rows skipped on purpose (filtered) or by the `skip` error policy.
    pub skipped: u64,
    /// Rows routed to the dead-letter table, with the reason.
    pub dead_letters: Vec<DeadLetter>,
}

/// A row that a plugin could not process under the `dead_letter` policy.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The plugin that failed.
    pub plugin: String,
    /// The failure.
    pub error: String,
    /// The change, in the destination layout it had when the plugin failed, as JSON.
    pub row: serde_json::Value,
    /// The operation.
    pub op: crate::model::Op,
}

/// Reshapes tables and rows between the source and the destination.
pub trait Transform: Send {
    /// Computes where a source table lands. Called once per relation version.
    fn map_table(
        &mut self,
        source: Arc<TableSchema>,
        dest_schema: &str,
    ) -> Result<TableMapping, TransformError>;

    /// Transforms a batch of changes of one table in place (rows already in the mapping's
    /// destination layout). Changes removed from `batch` are not applied.
    fn transform_rows(
        &mut self,
        mapping: &TableMapping,
        batch: &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError>;
}

/// The kept rows of a batch and what happened to the others.
pub type RowStepResult = Result<(Vec<RowChange>, RowOutcome), TransformError>;

/// A batch's row step (see [`start_row_step`]).
#[derive(Debug)]
pub struct RowStepTask(Step);

#[derive(Debug)]
enum Step {
    /// Run on the calling thread already.
    Done(RowStepResult),
    /// Running on a thread of the blocking pool.
    Running(tokio::task::JoinHandle<RowStepResult>),
}

/// Batches smaller than this run on the calling thread: handing a batch to another thread
/// and back costs tens of microseconds, more than plugins take over a few rows (a workload
/// like pgbench flushes one row per table at every commit).
const OFF_THREAD_MIN_ROWS: usize = 64;

/// Starts [`Transform::transform_rows`] over `batch`: on a thread of the blocking pool, or, for
/// a small batch when the transform is free, at once on the calling thread.
///
/// The pipeline runs on one thread: a long row step run there would stop the replication
/// stream's reader, the snapshot's COPY readers and the destination writer for as long as the
/// plugins work, and the source would wait with them. Off that thread they go on while plugins
/// run. Steps of one transform run one at a time, in the order they take its lock; a caller
/// keeps one step of a table in flight, so a table's batches stay in order.
pub fn start_row_step(
    transform: &SharedTransform,
    mapping: &Arc<TableMapping>,
    mut batch: Vec<RowChange>,
) -> RowStepTask {
    if batch.len() < OFF_THREAD_MIN_ROWS {
        if let Ok(mut guard) = transform.try_lock() {
            let result = guard
                .transform_rows(mapping, &mut batch)
                .map(|outcome| (batch, outcome));
            return RowStepTask(Step::Done(result));
        }
    }
    let transform = Arc::clone(transform);
    let mapping = Arc::clone(mapping);
    RowStepTask(Step::Running(tokio::task::spawn_blocking(move || {
        let mut guard = transform.blocking_lock_owned();
        guard
            .transform_rows(&mapping, &mut batch)
            .map(|outcome| (batch, outcome))
    })))
}

impl RowStepTask {
    /// Waits for the step: the rows it kept and what happened to the others.
    pub async fn finish(self) -> RowStepResult {
        let task = match self.0 {
            Step::Done(result) => return result,
            Step::Running(task) => task,
        };
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(TransformError {
                message: format!("the row step did not finish: {e}"),
            }),
        }
    }
}

/// The transform that changes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl Transform for Identity {
    fn map_table(
        &mut self,
        source: Arc<TableSchema>,
        dest_schema: &str,
    ) -> Result<TableMapping, TransformError> {
        Ok(TableMapping::identity(source, dest_schema))
    }

    fn transform_rows(
        &mut self,
        _mapping: &TableMapping,
        _batch: &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError> {
        Ok(RowOutcome::default())
    }
}
