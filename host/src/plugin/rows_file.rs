//! The rows file of `pgmorph plugin run`: JSON lines, an optional `{"columns": [...]}` header
//! stating the table's columns, then one change per line. The format is documented in
//! `plugin-sdk/README.md` ("Trying a plugin on sample rows").

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};

use crate::model::{Cell, Column, Op, ReplicaIdentity, Row, TableName, TableSchema};

use super::PluginError;

/// A rows file's table, and what was assumed when it had no header line.
#[derive(Debug, Clone)]
pub struct RowsTable {
    /// The table the rows belong to, columns in the order of the file.
    pub schema: TableSchema,
    /// Without a `{"columns": [...]}` header: the columns, types and key that were assumed.
    pub assumed: Option<String>,
}

/// Reads the table of a rows file: from its `{"columns": [{"name": "id", "type": "bigint",
/// "key": true}, ...]}` header line, or else assumed from the first row: its keys in the file's
/// order, types guessed from the JSON values, a column named `id` as the key (stated in
/// [`RowsTable::assumed`]).
pub fn read_rows_table(name: &TableName, rows_jsonl: &str) -> Result<RowsTable, PluginError> {
    let first = rows_jsonl
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| PluginError::Input("the rows file is empty".into()))?;
    let value: serde_json::Value = serde_json::from_str(first)
        .map_err(|e| PluginError::Input(format!("line 1 is not JSON: {e}")))?;
    let (columns, assumed) = match value.get("columns") {
        Some(cols) => (header_columns(cols)?, None),
        None => {
            let columns = guessed_columns(first)?;
            let assumed = describe_assumed(&columns);
            (columns, Some(assumed))
        }
    };
    Ok(RowsTable {
        schema: TableSchema {
            oid: 1,
            name: name.clone(),
            columns,
            identity: ReplicaIdentity::Default,
            has_primary_key: true,
        },
        assumed,
    })
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
    Ok(columns)
}

/// The columns of the first row (`new`, else `old`, else the line itself), in file order.
fn guessed_columns(first: &str) -> Result<Vec<Column>, PluginError> {
    #[derive(serde::Deserialize)]
    struct Rows {
        old: Option<OrderedObject>,
        new: Option<OrderedObject>,
    }
    let bad =
        |e: serde_json::Error| PluginError::Input(format!("line 1 is not a JSON object: {e}"));
    let line: OrderedObject = serde_json::from_str(first).map_err(bad)?;
    let row = if line.get("new").is_some() || line.get("old").is_some() {
        let rows: Rows = serde_json::from_str(first).map_err(bad)?;
        rows.new.or(rows.old).unwrap_or(OrderedObject(Vec::new()))
    } else {
        line
    };
    Ok(row
        .0
        .iter()
        .map(|(k, v)| {
            let type_sql = match v {
                serde_json::Value::Bool(_) => "boolean",
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "bigint",
                serde_json::Value::Number(_) => "double precision",
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => "jsonb",
                _ => "text",
            };
            column(k, type_sql, k == "id", k == "id")
        })
        .collect())
}

fn describe_assumed(columns: &[Column]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            let key = if c.is_key { " (key)" } else { "" };
            format!("{} {}{key}", c.name, c.type_sql)
        })
        .collect();
    let key = if columns.iter().any(|c| c.is_key) {
        ""
    } else {
        "; no key column (no column is named id)"
    };
    format!(
        "the rows file has no {{\"columns\": [...]}} header line; assumed the columns of line 1, types guessed from its values: {}{key}. Add a header line to state types and keys",
        list.join(", ")
    )
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

/// A JSON object with its keys in the order of the text.
struct OrderedObject(Vec<(String, serde_json::Value)>);

impl OrderedObject {
    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(OrderedObject(entries))
            }
        }
        d.deserialize_map(Keys)
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
    fn without_a_header_the_columns_keep_the_file_order_and_the_assumption_is_stated() {
        let t = read_rows_table(
            &TableName::new("public", "users"),
            "{\"zeta\": 1, \"id\": 2, \"alpha\": \"a\"}\n",
        )
        .unwrap();
        let expected = [
            ("zeta", "bigint", false),
            ("id", "bigint", true),
            ("alpha", "text", false),
        ];
        assert_eq!(names(&t), expected);
        let assumed = t.assumed.unwrap();
        assert!(
            assumed.contains("zeta bigint, id bigint (key), alpha text"),
            "{assumed}"
        );
    }

    #[test]
    fn a_header_states_columns_and_nothing_is_assumed() {
        let t = read_rows_table(
            &TableName::new("public", "users"),
            "{\"columns\": [{\"name\": \"k\", \"type\": \"uuid\", \"key\": true}, {\"name\": \"b\"}]}\n{\"k\": \"x\"}\n",
        )
        .unwrap();
        assert_eq!(names(&t), [("k", "uuid", true), ("b", "text", false)]);
        assert!(t.assumed.is_none());
    }

    #[test]
    fn an_update_line_without_a_header_takes_its_columns_from_new() {
        let t = read_rows_table(
            &TableName::new("public", "t"),
            "{\"op\": \"update\", \"old\": {\"id\": 1}, \"new\": {\"id\": 1, \"b\": true}}\n",
        )
        .unwrap();
        assert_eq!(names(&t), [("id", "bigint", true), ("b", "boolean", false)]);
        assert!(t.assumed.unwrap().contains("id bigint (key), b boolean"));
    }
}
