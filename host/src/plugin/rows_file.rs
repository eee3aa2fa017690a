//! The rows file of `pgmorph plugin run`: JSON lines, a `{"columns": [...]}` header stating the
//! table's columns, then one change per line. The format is documented in
//! `plugin-sdk/README.md` ("Trying a plugin on sample rows").

use crate::model::{Cell, Column, Op, ReplicaIdentity, Row, TableName, TableSchema};

use super::PluginError;

/// The header line a rows file must start with, as an example.
pub const HEADER_EXAMPLE: &str = r#"{"columns": [{"name": "id", "type": "bigint", "key": true}, {"name": "email", "type": "text"}]}"#;

/// A rows file's table.
#[derive(Debug, Clone)]
pub struct RowsTable {
    /// The table the rows belong to, columns in the order of the header.
    pub schema: TableSchema,
}

/// Reads the table of a rows file from its `{"columns": [{"name": "id", "type": "bigint",
/// "key": true}, ...]}` header line. A file whose first line is not that header is refused:
/// column types, order and keys cannot be told from a row.
pub fn read_rows_table(name: &TableName, rows_jsonl: &str) -> Result<RowsTable, PluginError> {
    let first = rows_jsonl
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| PluginError::Input(missing_header("the rows file is empty")))?;
    let value: serde_json::Value = serde_json::from_str(first)
        .map_err(|e| PluginError::Input(missing_header(&format!("line 1 is not JSON ({e})"))))?;
    let cols = value
        .get("columns")
        .ok_or_else(|| PluginError::Input(missing_header("line 1 has no \"columns\" key")))?;
    Ok(RowsTable {
        schema: TableSchema {
            oid: 1,
            name: name.clone(),
            columns: header_columns(cols)?,
            identity: ReplicaIdentity::Default,
            has_primary_key: true,
        },
    })
}

fn missing_header(what: &str) -> String {
    format!(
        "the rows file must start with a header line stating the table's columns, in order \
         (\"type\": SQL type, default text; \"key\" and \"not_null\": booleans), for example \
         {HEADER_EXAMPLE}; {what}"
    )
}

fn header_columns(cols: &serde_json::Value) -> Result<Vec<Column>, PluginError> {
    let cols = cols
        .as_array()
        .ok_or_else(|| PluginError::Input("\"columns\" must be an array".into()))?;
    let mut columns = Vec::with_capacity(cols.len());
    for c in cols {
        let col_name = c
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| PluginError::Input("a column needs a \"name\"".into()))?;
        let type_sql = c.get("type").and_then(|n| n.as_str()).unwrap_or("text");
        let is_key = c.get("key").and_then(|k| k.as_bool()).unwrap_or(false);
        let not_null = is_key || c.get("not_null").and_then(|k| k.as_bool()).unwrap_or(false);
        columns.push(column(col_name, type_sql, not_null, is_key));
    }
    if columns.is_empty() {
        return Err(PluginError::Input("\"columns\" lists no column".into()));
    }
    Ok(columns)
}

fn column(name: &str, type_sql: &str, not_null: bool, is_key: bool) -> Column {
    Column {
        name: name.to_string(),
        type_oid: 0,
        type_modifier: -1,
        type_sql: type_sql.to_string(),
        not_null,
        is_key,
    }
}

/// One change of a rows file, by source column name.
pub(crate) struct FileChange<'a> {
    pub(crate) op: Op,
    pub(crate) old: Option<&'a serde_json::Value>,
    pub(crate) new: Option<&'a serde_json::Value>,
}

/// Reads line `line` (1-based, for messages): a row object (a snapshot row) or
/// `{"op": ..., "old": {...}, "new": {...}}`.
pub(crate) fn file_change(
    v: &serde_json::Value,
    line: usize,
) -> Result<FileChange<'_>, PluginError> {
    let Some(op) = v.get("op").and_then(|o| o.as_str()) else {
        return Ok(FileChange {
            op: Op::Snapshot,
            old: None,
            new: Some(v),
        });
    };
    let op = match op {
        "snapshot" => Op::Snapshot,
        "insert" => Op::Insert,
        "update" => Op::Update,
        "delete" => Op::Delete,
        other => {
            return Err(PluginError::Input(format!(
                "line {line}: unknown op {other:?}"
            )))
        }
    };
    Ok(FileChange {
        op,
        old: v.get("old"),
        new: v.get("new"),
    })
}

fn json_cell(v: &serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::String(s) => Cell::text(s.clone()),
        serde_json::Value::Bool(b) => Cell::text(if *b { "t" } else { "f" }),
        other => Cell::text(other.to_string()),
    }
}

/// A row object as a row of `table` (columns it lacks are NULL).
pub(crate) fn source_row(table: &TableSchema, v: &serde_json::Value) -> Result<Row, PluginError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PluginError::Input("a row must be a JSON object".into()))?;
    Ok(table
        .columns
        .iter()
        .map(|c| obj.get(&c.name).map(json_cell).unwrap_or(Cell::Null))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &RowsTable) -> Vec<(&str, &str, bool)> {
        t.schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_sql.as_str(), c.is_key))
            .collect()
    }

    #[test]
    fn a_file_without_a_header_is_refused_with_the_expected_format() {
        let err = read_rows_table(
            &TableName::new("public", "users"),
            "{\"zeta\": 1, \"id\": 2, \"alpha\": \"a\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("must start with a header line"), "{err}");
        assert!(err.contains(HEADER_EXAMPLE), "{err}");
        assert!(err.contains("line 1 has no \"columns\" key"), "{err}");
    }

    #[test]
    fn an_empty_file_and_a_non_json_line_are_refused() {
        let name = TableName::new("public", "t");
        let empty = read_rows_table(&name, "\n  \n").unwrap_err().to_string();
        assert!(empty.contains("the rows file is empty"), "{empty}");
        let bad = read_rows_table(&name, "id,email\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("line 1 is not JSON"), "{bad}");
        let none = read_rows_table(&name, "{\"columns\": []}\n")
            .unwrap_err()
            .to_string();
        assert!(none.contains("lists no column"), "{none}");
    }

    #[test]
    fn a_header_states_columns_in_order() {
        let t = read_rows_table(
            &TableName::new("public", "users"),
            "{\"columns\": [{\"name\": \"k\", \"type\": \"uuid\", \"key\": true}, {\"name\": \"b\"}]}\n{\"k\": \"x\"}\n",
        )
        .unwrap();
        assert_eq!(names(&t), [("k", "uuid", true), ("b", "text", false)]);
        assert!(t.schema.columns[0].not_null);
    }
}
