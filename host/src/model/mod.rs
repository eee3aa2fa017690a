//! The shared vocabulary of the data path: LSNs, table schemas, mappings, cells and changes.

mod change;
mod lsn;
mod mapping;
mod table;

pub use change::{Cell, Op, Row, RowChange};
pub use lsn::Lsn;
pub use mapping::{MappedColumn, TableMapping};
pub use table::{quote_ident, quote_literal, Column, ReplicaIdentity, TableName, TableSchema};
