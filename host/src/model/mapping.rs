//! Where a source table lands on the destination, column by column.

use std::sync::Arc;

use super::{Cell, Op, Row, RowChange, TableName, TableSchema};

/// One destination column and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedColumn {
    /// Destination column name.
    pub name: String,
    /// Destination SQL type.
    pub type_sql: String,
    /// Index of the source column feeding it; `None` for a column computed by a plugin.
    pub source_index: Option<usize>,
    /// Whether the destination column is NOT NULL.
    pub not_null: bool,
    /// Whether the column identifies the row (primary key on the destination).
    pub is_key: bool,
    /// Names of the plugins that changed this column's name or type, in chain order.
    pub changed_by: Vec<String>,
}

/// The destination of one source table, computed once per relation version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// The source table as the catalog or the stream described it.
    pub source: Arc<TableSchema>,
    /// The destination table.
    pub destination: TableName,
    /// Destination columns, in destination order.
    pub columns: Vec<MappedColumn>,
    /// Whether the table is not replicated at all.
    pub skip: bool,
    /// Whether rows must pass through the row step (false: projection alone is enough).
    pub transforms_rows: bool,
}

impl TableMapping {
    /// The identity mapping: same table name in `dest_schema`, same columns and types.
    pub fn identity(source: Arc<TableSchema>, dest_schema: &str) -> Self {
        let columns = source
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| MappedColumn {
                name: c.name.clone(),
                type_sql: c.type_sql.clone(),
                source_index: Some(i),
                not_null: c.not_null,
                is_key: c.is_key,
                changed_by: Vec::new(),
            })
            .collect();
        Self {
            destination: TableName::new(dest_schema, source.name.name.clone()),
            source,
            columns,
            skip: false,
            transforms_rows: false,
        }
    }

    /// Whether the destination columns are the source columns, in order, without computed ones.
    pub fn is_plain_projection_of_all(&self) -> bool {
        self.columns.len() == self.source.columns.len()
            && self
                .columns
                .iter()
                .enumerate()
                .all(|(i, c)| c.source_index == Some(i))
    }

    /// A source change with its rows in the destination layout ([`Self::project`]).
    pub fn project_change(&self, op: Op, old: Option<Row>, new: Option<Row>) -> RowChange {
        RowChange {
            op,
            old: old.map(|r| self.project(r)),
            new: new.map(|r| self.project(r)),
        }
    }

    /// Reorders a source row into the destination layout; computed columns start as NULL.
    pub fn project(&self, row: Row) -> Row {
        if self.is_plain_projection_of_all() {
            return row;
        }
        self.columns
            .iter()
            .map(|c| match c.source_index {
                Some(i) => row.get(i).cloned().unwrap_or(Cell::Null),
                None => Cell::Null,
            })
            .collect()
    }

    /// Whether the table's values may travel in binary form (COPY's binary format, pgoutput's
    /// binary values, binary parameters): no row step, every destination column fed by a
    /// source column of the same type, and every type one whose binary form does not name a
    /// source-specific type OID (built-in types and their arrays, enums and domains).
    pub fn binary_safe(&self) -> bool {
        /// OIDs below this are built in and the same on every server.
        const FIRST_NORMAL_OID: u32 = 16384;
        !self.transforms_rows
            && self.columns.iter().all(|c| match c.source_index {
                None => false,
                Some(i) => {
                    let s = &self.source.columns[i];
                    s.type_sql == c.type_sql
                        && (s.type_oid < FIRST_NORMAL_OID
                            || (!c.type_sql.ends_with("[]") && c.type_sql != "text"))
                }
            })
    }

    /// Indexes (destination layout) of the columns that identify a row.
    pub fn key_indexes(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].is_key)
            .collect()
    }
}

impl TableMapping {
    /// A row's values by column name, as JSON text (NULL as `null`; unchanged TOAST values
    /// left out).
    pub fn row_json(&self, row: &Row) -> serde_json::Value {
        self.columns_json(row, |_| true)
    }

    /// A row's key columns by name, as JSON text.
    pub fn key_json(&self, row: &Row) -> serde_json::Value {
        self.columns_json(row, |c| c.is_key)
    }

    /// A change as JSON: `{"old": {column: text}, "new": {...}}`.
    pub fn change_json(&self, old: Option<&Row>, new: Option<&Row>) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        if let Some(old) = old {
            obj.insert("old".into(), self.row_json(old));
        }
        if let Some(new) = new {
            obj.insert("new".into(), self.row_json(new));
        }
        serde_json::Value::Object(obj)
    }

    fn columns_json(&self, row: &Row, keep: impl Fn(&MappedColumn) -> bool) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (cell, column) in row.iter().zip(&self.columns).filter(|(_, c)| keep(c)) {
            let value = match cell {
                Cell::Null => serde_json::Value::Null,
                Cell::Text(t) => serde_json::Value::String(String::from_utf8_lossy(t).into_owned()),
                Cell::Binary(b) => {
                    let oid = column
                        .source_index
                        .map_or(0, |i| self.source.columns[i].type_oid);
                    serde_json::Value::String(super::binary_text::render(oid, b))
                }
                Cell::Unchanged => continue,
            };
            map.insert(column.name.clone(), value);
        }
        serde_json::Value::Object(map)
    }
}
