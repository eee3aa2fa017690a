//! Rows a plugin could not process under the `dead_letter` policy, written to
//! `pgmorph.dead_letters` in the destination transaction of the rows around them (CDC and
//! snapshot alike).

use super::params::TextParam;
use crate::transform::DeadLetter;

/// $1 connector, $2 source table, $3 operation, $4 source LSN, $5 plugin, $6 error, $7 the row
/// (JSON text); all in text format.
pub(crate) const INSERT: &str = "INSERT INTO pgmorph.dead_letters \
     (connector, source_table, op, lsn, plugin, error, row_data) \
     VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)";

/// The parameters of [`INSERT`] for one row; `op` is the change's (`snapshot` for copied
/// rows) and `lsn` its transaction's (`0/0` for copied rows).
pub(crate) fn params(
    connector: &str,
    table: &str,
    op: &str,
    lsn: &str,
    d: &DeadLetter,
) -> Vec<TextParam> {
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
    .map(|s| TextParam::from(s.to_string()))
    .collect()
}
