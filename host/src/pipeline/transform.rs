//! The seam between replication and reshaping: a per-table mapping step and a per-batch row step.
//!
//! The replication core calls [`Transform::map_table`] once per relation version and
//! [`Transform::transform_rows`] once per batch of row changes of one table. [`Identity`] is the
//! transform used when no plugin is configured.

use std::sync::Arc;

use crate::model::{RowChange, TableMapping, TableSchema};

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
