//! The seam between replication and reshaping: a per-table mapping step and a per-batch row step.
//!
//! The replication core calls [`Transform::map_table`] once per relation version and
//! [`Transform::transform_rows`] once per batch of row changes of one table (or
//! [`Transform::transform_batches`] for several tables' batches at once). [`Identity`] is the
//! transform used when no plugin is configured.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::model::{Provenance, RowChange, TableMapping, TableSchema};

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

    /// Transforms several tables' batches, in order, as one step: a source transaction that
    /// touches several tables makes one trip to the plugins instead of one per table. Stops at
    /// the first batch that fails.
    fn transform_batches(&mut self, batches: &mut [TableBatch]) -> Result<(), RowStepError> {
        each_batch(batches, |mapping, _, changes| {
            self.transform_rows(mapping, changes)
        })
    }

    /// A copy of this transform for one worker of a parallel step (a snapshot copy worker):
    /// the same mappings, state of its own (plugin instances), so that workers run row steps
    /// at once. `None` (the default): the workers share this transform.
    fn fork(&self) -> Result<Option<Box<dyn Transform>>, TransformError> {
        Ok(None)
    }

    /// Changes whenever the mappings do (a table mapped, a new chain): a copy made by
    /// [`Transform::fork`] holds the generation it was made from, and is made again when the
    /// shared transform's has moved on. Unique within the process.
    fn generation(&self) -> u64 {
        0
    }
}

/// One table's consecutive changes on their way through the row step.
#[derive(Debug)]
pub struct TableBatch {
    /// Where the changes go.
    pub mapping: Arc<TableMapping>,
    /// The changes; after the step, the ones it kept.
    pub changes: Vec<RowChange>,
    /// What the step did with the others.
    pub outcome: RowOutcome,
    /// Where and when the changes happened on the source.
    pub provenance: Provenance,
}

impl TableBatch {
    /// A batch not through the row step yet.
    pub fn new(mapping: Arc<TableMapping>, changes: Vec<RowChange>) -> Self {
        Self {
            mapping,
            changes,
            outcome: RowOutcome::default(),
            provenance: Provenance::default(),
        }
    }

    /// The batch, with where and when its changes happened on the source.
    pub fn at(self, provenance: Provenance) -> Self {
        Self { provenance, ..self }
    }
}

/// The row step failed on one table's batch.
#[derive(Debug, thiserror::Error)]
#[error("plugin error on table {table}: {source}")]
pub struct RowStepError {
    /// The source table of the batch that failed.
    pub table: String,
    /// The error.
    #[source]
    pub source: TransformError,
}

/// Runs `step` over each batch in order, recording each outcome; stops at the first error.
pub fn each_batch(
    batches: &mut [TableBatch],
    mut step: impl FnMut(
        &TableMapping,
        &Provenance,
        &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError>,
) -> Result<(), RowStepError> {
    for b in batches {
        b.outcome =
            step(&b.mapping, &b.provenance, &mut b.changes).map_err(|source| RowStepError {
                table: b.mapping.source.name.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// The batches after the row step.
pub type RowStepResult = Result<Vec<TableBatch>, RowStepError>;

/// A batch's row step (see [`start_row_step`]).
#[derive(Debug)]
pub struct RowStepTask(Step);

#[derive(Debug)]
enum Step {
    /// Run on the calling thread already.
    Done(RowStepResult),
    /// Running on a thread of the blocking pool; the first batch's source table.
    Running(tokio::task::JoinHandle<RowStepResult>, String),
}

/// A batch for the row step is cut at this many bytes of values, whatever its row count:
/// rows with values of a megabyte must not make batches of a gigabyte.
pub const MAX_BATCH_BYTES: usize = 8 << 20;

/// Batches smaller than this run on the calling thread: handing a batch to another thread
/// and back costs tens of microseconds, more than plugins take over a few rows (a workload
/// like pgbench flushes one row per table at every commit).
const OFF_THREAD_MIN_ROWS: usize = 64;

/// Starts [`Transform::transform_batches`] over `batches`: on a thread of the blocking pool,
/// or, when they hold few rows and the transform is free, at once on the calling thread.
///
/// The pipeline runs on one thread: a long row step run there would stop the replication
/// stream's reader, the snapshot's COPY readers and the destination writer for as long as the
/// plugins work, and the source would wait with them. Off that thread they go on while plugins
/// run. Steps of one transform run one at a time, in the order they take its lock; a caller
/// keeps one step of a table in flight, so a table's batches stay in order.
pub fn start_row_step(transform: &SharedTransform, mut batches: Vec<TableBatch>) -> RowStepTask {
    let rows: usize = batches.iter().map(|b| b.changes.len()).sum();
    if rows < OFF_THREAD_MIN_ROWS {
        if let Ok(mut guard) = transform.try_lock() {
            let result = guard.transform_batches(&mut batches).map(|()| batches);
            return RowStepTask(Step::Done(result));
        }
    }
    let transform = Arc::clone(transform);
    let table = batches
        .first()
        .map(|b| b.mapping.source.name.to_string())
        .unwrap_or_default();
    let task = tokio::task::spawn_blocking(move || {
        let mut guard = transform.blocking_lock_owned();
        guard.transform_batches(&mut batches).map(|()| batches)
    });
    RowStepTask(Step::Running(task, table))
}

impl RowStepTask {
    /// Waits for the step: the rows it kept and what happened to the others.
    pub async fn finish(self) -> RowStepResult {
        let (task, table) = match self.0 {
            Step::Done(result) => return result,
            Step::Running(task, table) => (task, table),
        };
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(RowStepError {
                table,
                source: TransformError {
                    message: format!("the row step did not finish: {e}"),
                },
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
