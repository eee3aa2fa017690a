//! How applying to the destination fails.

use crate::model::TableName;

/// Applying to the destination failed; nothing of the open transaction is committed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A statement failed.
    #[error("applying to destination table {table} failed: {source}")]
    Statement {
        /// The destination table (or `pgmorph.state`).
        table: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// The destination refused a statement that follows a source DDL command.
    #[error(
        "source DDL {statement:?} cannot be applied to {table}: the destination refused {sql}"
    )]
    SourceDdl {
        /// The destination table.
        table: String,
        /// The source statement.
        statement: String,
        /// The destination statement refused.
        sql: String,
        /// The destination's error.
        source: tokio_postgres::Error,
    },
    /// The destination refused a row (a constraint, a trigger, a value its type rejects).
    #[error("{0}")]
    Refused(Box<super::refusals::Refusal>),
    /// A change that must follow everything before it on one connection (DDL, TRUNCATE, a
    /// changed key) came after changes of the same destination transaction went to other apply
    /// lanes (`apply.parallel`); nothing of the transaction is committed.
    #[error("{what} must follow the changes before it on one apply connection")]
    Spread {
        /// The change.
        what: String,
    },
    /// A change could not be expressed as SQL.
    #[error("cannot apply a change to {table}: {message}")]
    Unusable {
        /// The destination table.
        table: String,
        /// Why.
        message: String,
    },
}

pub(super) fn failed(table: &TableName) -> impl FnOnce(tokio_postgres::Error) -> ApplyError + '_ {
    move |source| ApplyError::Statement {
        table: table.to_string(),
        source,
    }
}
