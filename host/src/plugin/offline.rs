//! The offline tools behind `pgmorph plugin check` and `pgmorph plugin run`, and the mapping
//! description printed by `pgmorph schemasync --dry-run`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::types::ComponentItem;

use crate::config::{OnError, PluginSettings};
use crate::model::{
    Cell, Column, Op, Provenance, ReplicaIdentity, Row, RowChange, TableMapping, TableName,
    TableSchema,
};
use crate::transform::{TableBatch, Transform};

use super::bindings;
use super::chain::{LoadOptions, PluginChain};
use super::engine::{load_component, runtime};
use super::PluginError;

/// What `pgmorph plugin check` found.
#[derive(Debug, Clone)]
pub struct PluginReport {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The world it implements.
    pub world: String,
    /// What it imports (interfaces, with the functions of pgmorph's own).
    pub imports: Vec<String>,
    /// What it exports, `interface: function, ...`.
    pub exports: Vec<String>,
    /// Time to compile or load from the cache.
    pub load_ms: u128,
}

impl fmt::Display for PluginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: valid {} component ({} bytes, loaded in {} ms)",
            self.path.display(),
            self.world,
            self.size,
            self.load_ms
        )?;
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        Ok(())
    }
}

fn item_names(engine: &wasmtime::Engine, name: &str, item: &ComponentItem) -> String {
    match item {
        ComponentItem::ComponentInstance(inst) => {
            let funcs: Vec<&str> = inst
                .exports(engine)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(n, _)| n)
                .collect();
            format!("{name}: {}", funcs.join(", "))
        }
        _ => name.to_string(),
    }
}

/// Validates a component against the `pgmorph:plugin/plugin@0.1.0` world (its imports can be
/// satisfied by the sandbox, its exports have the right types) and lists what it exports.
pub fn check(path: &Path) -> Result<PluginReport, PluginError> {
    check_with(path, &LoadOptions::default())
}

/// [`check`] with explicit load options.
pub fn check_with(path: &Path, options: &LoadOptions) -> Result<PluginReport, PluginError> {
    let rt = runtime()?;
    let started = Instant::now();
    let component = load_component(rt, path, options.cache_dir.as_deref())?;
    let load_ms = started.elapsed().as_millis();
    let invalid = |e: wasmtime::Error| PluginError::Invalid {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    let pre = rt.linker.instantiate_pre(&component).map_err(invalid)?;
    bindings::PluginPre::new(pre).map_err(invalid)?;
    let ty = component.component_type();
    let imports = ty
        .imports(&rt.engine)
        .map(|(n, item)| {
            if n.starts_with("pgmorph:") {
                item_names(&rt.engine, n, &item.ty)
            } else {
                n.to_string()
            }
        })
        .collect();
    let exports = ty
        .exports(&rt.engine)
        .map(|(n, item)| item_names(&rt.engine, n, &item.ty))
        .collect();
    Ok(PluginReport {
        path: path.to_path_buf(),
        size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        world: "pgmorph:plugin/plugin@0.1.0".into(),
        imports,
        exports,
        load_ms,
    })
}

/// A table's mapping, column by column, for humans.
pub fn describe_mapping(mapping: &TableMapping) -> String {
    let mut out = String::new();
    let source = &mapping.source;
    if mapping.skip {
        out.push_str(&format!("{} -> skipped\n", source.name));
        return out;
    }
    out.push_str(&format!(
        "{} -> {}{}\n",
        source.name,
        mapping.destination,
        if mapping.transforms_rows {
            " (row plugins)"
        } else {
            ""
        }
    ));
    for c in &mapping.columns {
        let from = match c.source_index.and_then(|i| source.columns.get(i)) {
            Some(s) => format!("{} {}", s.name, s.type_sql),
            None => "(computed)".to_string(),
        };
        let by = if c.changed_by.is_empty() {
            String::new()
        } else {
            format!("  [{}]", c.changed_by.join(", "))
        };
        let key = if c.is_key { " key" } else { "" };
        out.push_str(&format!("  {from} -> {} {}{key}{by}\n", c.name, c.type_sql));
    }
    for (i, s) in source.columns.iter().enumerate() {
        if !mapping.columns.iter().any(|c| c.source_index == Some(i)) {
            out.push_str(&format!("  {} {} -> (dropped)\n", s.name, s.type_sql));
        }
    }
    out
}

/// A schema for offline runs: from a first line `{"columns": [{"name": "id", "type": "bigint",
/// "key": true}, ...]}`, or else inferred from the first row's keys (in alphabetical order; a
/// column named `id` is the key).
pub fn schema_from_jsonl(name: &TableName, rows_jsonl: &str) -> Result<TableSchema, PluginError> {
    let first = rows_jsonl
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| PluginError::Input("the rows file is empty".into()))?;
    let value: serde_json::Value = serde_json::from_str(first)
        .map_err(|e| PluginError::Input(format!("line 1 is not JSON: {e}")))?;
    let mut columns = Vec::new();
    if let Some(cols) = value.get("columns").and_then(|c| c.as_array()) {
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
    } else {
        let row = value.get("new").or(value.get("old")).unwrap_or(&value);
        let obj = row
            .as_object()
            .ok_or_else(|| PluginError::Input("line 1 is not a JSON object".into()))?;
        for (k, v) in obj {
            let type_sql = match v {
                serde_json::Value::Bool(_) => "boolean",
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "bigint",
                serde_json::Value::Number(_) => "double precision",
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => "jsonb",
                _ => "text",
            };
            columns.push(column(k, type_sql, k == "id", k == "id"));
        }
    }
    Ok(TableSchema {
        oid: 1,
        name: name.clone(),
        columns,
        identity: ReplicaIdentity::Default,
        has_primary_key: true,
    })
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

/// The result of an offline run.
#[derive(Debug, Clone)]
pub struct OfflineRun {
    /// The table's mapping after the plugin.
    pub mapping: TableMapping,
    /// One JSON object per input row: `{"line", "result": "keep"|"skip"|"dead_letter",
    /// "error"?, "old"?, "new"?}` in destination column names.
    pub results: Vec<serde_json::Value>,
}

fn json_cell(v: &serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::String(s) => Cell::text(s.clone()),
        serde_json::Value::Bool(b) => Cell::text(if *b { "t" } else { "f" }),
        other => Cell::text(other.to_string()),
    }
}

fn source_row(table: &TableSchema, v: &serde_json::Value) -> Result<Row, PluginError> {
    let obj = v
        .as_object()
        .ok_or_else(|| PluginError::Input("a row must be a JSON object".into()))?;
    Ok(table
        .columns
        .iter()
        .map(|c| obj.get(&c.name).map(json_cell).unwrap_or(Cell::Null))
        .collect())
}

/// Runs one plugin offline over sample rows (JSON lines: a row object, or
/// `{"op": "insert"|"update"|"delete"|"snapshot", "old": {...}, "new": {...}}`, by source column
/// name; a `{"columns": [...]}` header line is skipped). Plugin faults are reported per row, as
/// under `on_error = "dead_letter"`.
pub fn run_offline(
    path: &Path,
    settings: &PluginSettings,
    table: &TableSchema,
    rows_jsonl: &str,
) -> Result<OfflineRun, PluginError> {
    run_offline_with(path, settings, table, rows_jsonl, &LoadOptions::default())
}

/// [`run_offline`] with explicit load options.
pub fn run_offline_with(
    path: &Path,
    settings: &PluginSettings,
    table: &TableSchema,
    rows_jsonl: &str,
    options: &LoadOptions,
) -> Result<OfflineRun, PluginError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut settings = settings.clone();
    settings.on_error = OnError::DeadLetter;
    let mut chain = PluginChain::from_files(&[(name, path.to_path_buf(), settings)], options)?;
    let source = Arc::new(table.clone());
    let mapping = chain
        .map_table(source.clone(), &table.name.schema)
        .map_err(|e| PluginError::Input(e.message))?;
    let mut results = Vec::new();
    // The plugin's clock reads the time of the run; each row's random stream is seeded by
    // its line number.
    let started = Provenance {
        time_us: Provenance::unix_us(std::time::SystemTime::now()),
        ..Provenance::default()
    };
    for (n, line) in rows_jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| PluginError::Input(format!("line {}: {e}", n + 1)))?;
        if v.get("columns").is_some() {
            continue;
        }
        let (op, old, new) = match v.get("op").and_then(|o| o.as_str()) {
            None => (Op::Snapshot, None, Some(&v)),
            Some(op) => {
                let op = match op {
                    "snapshot" => Op::Snapshot,
                    "insert" => Op::Insert,
                    "update" => Op::Update,
                    "delete" => Op::Delete,
                    other => {
                        return Err(PluginError::Input(format!(
                            "line {}: unknown op {other:?}",
                            n + 1
                        )))
                    }
                };
                (op, v.get("old"), v.get("new"))
            }
        };
        let project = |r: Option<&serde_json::Value>| -> Result<Option<Row>, PluginError> {
            r.map(|r| source_row(table, r).map(|row| mapping.project(row)))
                .transpose()
        };
        let batch = vec![RowChange {
            op,
            old: project(old)?,
            new: project(new)?,
        }];
        let mut result = serde_json::Map::new();
        result.insert("line".into(), (n + 1).into());
        if mapping.skip {
            result.insert("result".into(), "skip".into());
            results.push(result.into());
            continue;
        }
        let at = Provenance {
            row: n as u64 + 1,
            ..started
        };
        let mut batches = [TableBatch::new(Arc::new(mapping.clone()), batch).at(at)];
        chain
            .transform_batches(&mut batches)
            .map_err(|e| PluginError::Input(e.source.message))?;
        let [TableBatch {
            changes: batch,
            outcome,
            ..
        }] = batches;
        if let Some(dead) = outcome.dead_letters.first() {
            result.insert("result".into(), "dead_letter".into());
            result.insert("error".into(), dead.error.clone().into());
            result.insert("row".into(), dead.row.clone());
        } else if let Some(change) = batch.first() {
            result.insert("result".into(), "keep".into());
            for (key, row) in [("old", &change.old), ("new", &change.new)] {
                if let Some(row) = row {
                    let obj: serde_json::Map<String, serde_json::Value> = row
                        .iter()
                        .zip(&mapping.columns)
                        .filter(|(c, _)| **c != Cell::Unchanged)
                        .map(|(c, col)| {
                            let v = match c {
                                Cell::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                                _ => serde_json::Value::Null,
                            };
                            (col.name.clone(), v)
                        })
                        .collect();
                    result.insert(key.into(), obj.into());
                }
            }
        } else {
            result.insert("result".into(), "skip".into());
        }
        results.push(result.into());
    }
    Ok(OfflineRun { mapping, results })
}
