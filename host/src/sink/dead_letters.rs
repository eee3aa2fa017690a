//! Rows set aside in `pgmorph.dead_letters`, in the destination transaction of the rows around
//! them: rows a plugin could not process under its `dead_letter` policy (CDC and snapshot
//! alike), and rows the destination refused under `on_apply_error = "dead_letter"`.

use super::params::Param;
use crate::metrics::{self, DeadLetterReason};
use crate::transform::DeadLetter;

/// $1 connector, $2 source table, $3 operation, $4 source LSN, $5 plugin, $6 error, $7 the row
/// (JSON text); all in text format.
pub(crate) const INSERT: &str = "INSERT INTO pgmorph.dead_letters \
     (connector, source_table, op, lsn, plugin, error, row_data) \
     VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)";

/// The parameters of [`INSERT`] for one row; `op` is the change's (`snapshot` for copied
/// rows) and `lsn` its transaction's (`0/0` for copied rows). Every plugin dead letter is
/// built here, and counted here for the metrics.
pub(crate) fn params(
    connector: &str,
    table: &str,
    op: &str,
    lsn: &str,
    d: &DeadLetter,
) -> Vec<Param> {
    metrics::dead_letter(table, DeadLetterReason::Plugin);
    [
        connector,
        table,
        op,
        lsn,
        &d.plugin,
        &d.error,
        &d.row.to_string(),
    ]
    .into_iter()
    .map(|s| Param::from(s.to_string()))
    .collect()
}

/// A row the destination refused: $1 connector, $2 source table, $3 operation, $4 source LSN,
/// $5 error, $6 SQLSTATE, $7 the change (JSON text), $8 its key (JSON text); no plugin.
pub(crate) const INSERT_REFUSED: &str = "INSERT INTO pgmorph.dead_letters \
     (connector, source_table, op, lsn, plugin, error, sqlstate, row_data, row_key) \
     VALUES ($1, $2, $3, $4, NULL, $5, $6, $7::text::jsonb, $8::text::jsonb)";

/// A row the destination refused, as [`INSERT_REFUSED`] records it.
pub(crate) struct Refused<'a> {
    pub connector: &'a str,
    pub table: &'a str,
    pub op: &'a str,
    pub lsn: &'a str,
    pub error: &'a str,
    pub sqlstate: &'a str,
    pub row: &'a serde_json::Value,
    pub key: &'a serde_json::Value,
}

impl Refused<'_> {
    /// The parameters of [`INSERT_REFUSED`]; every refused row set aside is built here, and
    /// counted here for the metrics.
    pub fn params(&self) -> Vec<Param> {
        metrics::dead_letter(self.table, DeadLetterReason::Refused);
        [
            self.connector,
            self.table,
            self.op,
            self.lsn,
            self.error,
            self.sqlstate,
            &self.row.to_string(),
            &self.key.to_string(),
        ]
        .into_iter()
        .map(|s| Param::from(s.to_string()))
        .collect()
    }
}
