//! A source sequence's value as it is to be set on the destination.

use super::TableName;

/// Where and how one source sequence's value lands on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceTarget {
    /// The source sequence.
    pub source: TableName,
    /// The destination sequence, when no destination column owns one already.
    pub dest: TableName,
    /// The destination table and column the sequence feeds, for an owned sequence.
    pub column: Option<(TableName, String)>,
    /// How it is declared (`AS bigint INCREMENT BY 1 ...`), when it has to be created.
    pub definition: String,
    /// The source's `last_value`.
    pub last_value: i64,
    /// The source's `is_called`.
    pub is_called: bool,
}
