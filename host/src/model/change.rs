//! Row values and row changes as they travel from the source to the destination.

use bytes::Bytes;

/// One value of a row, in the form the source produced.
///
/// Values stay in the form the source produced, so a row that no plugin touches is forwarded
/// without parsing any value: PostgreSQL's text form (COPY, and pgoutput by default), or the
/// type's binary send form when the stream sends binary values (`source.binary_values`, only
/// for tables that no row plugin reads and whose columns keep their source types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that the source did not send: the destination keeps its value.
    Unchanged,
    /// The value's text form.
    Text(Bytes),
    /// The value's binary form (the type's send function), for the same type on both sides.
    Binary(Bytes),
}

impl Cell {
    /// The text, if the cell holds one.
    pub fn as_text(&self) -> Option<&[u8]> {
        match self {
            Cell::Text(b) => Some(b),
            _ => None,
        }
    }

    /// The value's bytes, text or binary; `None` for NULL and unchanged values.
    pub fn value(&self) -> Option<&Bytes> {
        match self {
            Cell::Text(b) | Cell::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// Whether the cell holds a value in binary form.
    pub fn is_binary(&self) -> bool {
        matches!(self, Cell::Binary(_))
    }

    /// Builds a text cell from a string.
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(Bytes::from(s.into()))
    }
}

/// A row: one cell per column of the table it belongs to.
pub type Row = Vec<Cell>;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read by the initial snapshot.
    Snapshot,
    /// Inserted on the source.
    Insert,
    /// Updated on the source.
    Update,
    /// Deleted on the source.
    Delete,
}

impl Op {
    /// Lower-case name used in logs and dead-letter rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Snapshot => "snapshot",
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One row change in the destination table's column layout.
///
/// `old` is set for updates and deletes: the key columns always, every column under
/// `REPLICA IDENTITY FULL`, and `Cell::Null` for the columns the source did not send.
/// `new` is set for snapshot rows, inserts and updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// The kind of change.
    pub op: Op,
    /// The old row (identity columns), for updates and deletes.
    pub old: Option<Row>,
    /// The new row, for snapshot rows, inserts and updates.
    pub new: Option<Row>,
}

impl RowChange {
    /// Bytes of values the change holds, old and new row: what a batch of changes weighs.
    pub fn value_bytes(&self) -> usize {
        [&self.old, &self.new]
            .into_iter()
            .flatten()
            .flatten()
            .map(|cell| cell.value().map_or(0, Bytes::len))
            .sum()
    }

    /// Whether a value of the change is in binary form.
    pub fn has_binary(&self) -> bool {
        [&self.old, &self.new]
            .into_iter()
            .flatten()
            .flatten()
            .any(Cell::is_binary)
    }
}
