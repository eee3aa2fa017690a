//! The offline tools behind `pgmorph plugin check` and `pgmorph plugin run`, and the mapping
//! description printed by `pgmorph schemasync --dry-run`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::types::ComponentItem;

use crate::config::PluginSettings;
use crate::model::{Cell, Provenance, Row, RowChange, TableMapping, TableName, TableSchema};
use crate::transform::{TableBatch, Transform};

use super::bindings;
use super::chain::{LoadOptions, PluginChain};
use super::engine::{load_component, runtime};
use super::rows_file::{file_change, read_rows_table, source_row, FileChange};
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

/// Instantiates the plugin and runs its `init` with `settings`' config, memory cap and
/// deadline; returns how long that took in milliseconds. A plugin that hangs at start fails
/// with "ran past its N ms deadline".
pub fn check_init(path: &Path, settings: &PluginSettings) -> Result<u128, PluginError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let files = [(name, path.to_path_buf(), settings.clone())];
    PluginChain::from_files(&files, &LoadOptions::default())?;
    Ok(started.elapsed().as_millis())
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

/// A schema for offline runs, from the rows file's header line: see [`read_rows_table`].
pub fn schema_from_jsonl(name: &TableName, rows_jsonl: &str) -> Result<TableSchema, PluginError> {
    read_rows_table(name, rows_jsonl).map(|t| t.schema)
}

/// The result of an offline run.
#[derive(Debug, Clone)]
pub struct OfflineRun {
    /// The table's mapping after the plugin.
    pub mapping: TableMapping,
    /// One JSON object per input row: `{"line", "result": "keep"|"skip"|"dead_letter",
    /// "error"?, "old"?, "new"?}` in destination column names.
    pub results: Vec<serde_json::Value>,
    /// Calls of the row hook.
    pub calls: u32,
    /// Time spent in them.
    pub call_time: std::time::Duration,
    /// Time to load, initialise and map before the first call.
    pub start_time: std::time::Duration,
}

/// Runs one plugin offline over sample rows (JSON lines: a row object, or
/// `{"op": "insert"|"update"|"delete"|"snapshot", "old": {...}, "new": {...}}`, by source column
/// name; a `{"columns": [...]}` header line is skipped). Plugin faults follow `settings.on_error`:
/// `dead_letter` reports them per row, `skip` skips the row, `stop` ends the run with the error.
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
    let begun = Instant::now();
    let mut chain =
        PluginChain::from_files(&[(name, path.to_path_buf(), settings.clone())], options)?;
    let source = Arc::new(table.clone());
    let mapping = chain
        .map_table(source.clone(), &table.name.schema)
        .map_err(|e| PluginError::Input(e.message))?;
    let start_time = begun.elapsed();
    let (mut calls, mut call_time) = (0, std::time::Duration::ZERO);
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
        let FileChange { op, old, new } = file_change(&v, n + 1)?;
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
        let call = Instant::now();
        let stepped = chain.transform_batches(&mut batches);
        call_time += call.elapsed();
        calls += 1;
        stepped.map_err(|e| PluginError::Input(format!("line {}: {}", n + 1, e.source.message)))?;
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
    Ok(OfflineRun {
        mapping,
        results,
        calls,
        call_time,
        start_time,
    })
}
