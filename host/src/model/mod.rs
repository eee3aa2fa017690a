//! The shared vocabulary of the data path: LSNs, table schemas, mappings, cells and changes,
//! user types, secondary indexes, page ranges and where a batch of changes came from.

mod binary_text;
mod change;
mod index;
mod lsn;
mod mapping;
mod progress;
mod provenance;
mod ranges;
mod sequence;
mod table;
mod user_type;

pub use change::{Cell, Op, Row, RowChange};
pub use index::{IndexColumn, IndexTarget, SourceIndex};
pub use lsn::Lsn;
pub use mapping::{MappedColumn, TableMapping};
pub use progress::CopyFigures;
pub use provenance::{Provenance, Scope};
pub use ranges::{PageRange, RangePolicy};
pub use sequence::SequenceTarget;
pub use table::{quote_ident, quote_literal, Column, ReplicaIdentity, TableName, TableSchema};
pub use user_type::UserType;
