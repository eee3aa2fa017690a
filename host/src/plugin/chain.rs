//! [`PluginChain`]: every plugin of the plugin directory, in file-name order, as one
//! [`Transform`], with each plugin's `on_error` policy applied to the rows it fails on.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{OnError, PluginSettings};
use crate::model::{Cell, Provenance, Row, RowChange, TableMapping, TableSchema};
use crate::transform::{
    each_batch, DeadLetter, RowOutcome, RowStepError, TableBatch, Transform, TransformError,
};

use super::codec::{self, Verdict};
use super::engine::{default_cache_dir, load_component, runtime};
use super::instance::{outside_async, CallError, PluginInstance, Sandbox};
use super::layout::{compose, RowStep};
use super::{validate, PluginError};

/// How plugins are loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where compiled components are cached (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
        }
    }
}

#[derive(Clone)]
struct TableState {
    source: Arc<TableSchema>,
    id: u32,
    steps: Arc<[RowStep]>,
}

/// The plugins of a connector, applied in file-name order; implements [`Transform`].
pub struct PluginChain {
    /// The plugins in chain order.
    instances: Vec<PluginInstance>,
    /// Each plugin's `on_error` policy.
    policies: Vec<OnError>,
    tables: HashMap<u32, TableState>,
    next_id: u32,
    buf: Vec<u8>,
    /// See [`Transform::generation`]: drawn anew by every chain and every mapping.
    generation: u64,
}

/// The next chain generation (process-wide, so a new chain never repeats an old one's).
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl std::fmt::Debug for PluginChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginChain")
            .field("plugins", &self.names())
            .finish()
    }
}

impl PluginChain {
    /// Loads every `.wasm` file of `dir` in file-name order; `settings` is keyed by file stem.
    pub fn load(
        dir: &Path,
        settings: &BTreeMap<String, PluginSettings>,
    ) -> Result<Self, PluginError> {
        Self::load_with(dir, settings, &LoadOptions::default())
    }

    /// [`PluginChain::load`] with explicit options.
    pub fn load_with(
        dir: &Path,
        settings: &BTreeMap<String, PluginSettings>,
        options: &LoadOptions,
    ) -> Result<Self, PluginError> {
        let read_err = |source| PluginError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut plugins = Vec::with_capacity(files.len());
        for path in files {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let s = settings.get(&stem).cloned().unwrap_or_default();
            plugins.push((stem, path, s));
        }
        for stem in settings.keys() {
            if !plugins.iter().any(|(s, _, _)| s == stem) {
                return Err(PluginError::UnknownPlugin(stem.clone()));
            }
        }
        Self::from_files(&plugins, options)
    }

    /// Loads the given plugins, in this order: `(name, path, settings)`.
    pub fn from_files(
        files: &[(String, PathBuf, PluginSettings)],
        options: &LoadOptions,
    ) -> Result<Self, PluginError> {
        let rt = runtime()?;
        let mut instances = Vec::with_capacity(files.len());
        let mut policies = Vec::with_capacity(files.len());
        for (name, path, settings) in files {
            let component = load_component(rt, path, options.cache_dir.as_deref())?;
            let config_json = match &settings.config {
                None => "null".to_string(),
                Some(v) => serde_json::to_string(v).map_err(|e| PluginError::Init {
                    plugin: name.clone(),
                    message: format!("config cannot be turned into JSON: {e}"),
                })?,
            };
            let instance =
                PluginInstance::new(name, &component, config_json, Sandbox::of(settings))?;
            tracing::info!(plugin = %name, path = %path.display(), on_error = ?settings.on_error, "plugin loaded");
            instances.push(instance);
            policies.push(settings.on_error);
        }
        Ok(Self {
            instances,
            policies,
            tables: HashMap::new(),
            next_id: 1,
            buf: Vec::new(),
            generation: next_generation(),
        })
    }

    /// The plugins' names, in chain order.
    pub fn names(&self) -> Vec<&str> {
        self.instances.iter().map(|p| p.name.as_str()).collect()
    }

    /// Whether the chain has no plugin at all.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// How many times each plugin was re-instantiated after a fault.
    pub fn restarts(&self) -> Vec<(&str, u64)> {
        self.instances
            .iter()
            .map(|p| (p.name.as_str(), p.restarts))
            .collect()
    }

    /// Runs one row step over the batch, applying the plugin's error policy.
    fn run_step(
        &mut self,
        step: &RowStep,
        mapping: &TableMapping,
        at: &Provenance,
        batch: &mut Vec<RowChange>,
        outcome: &mut RowOutcome,
    ) -> Result<(), TransformError> {
        let width = step.positions.len();
        let plugin = &mut self.instances[step.plugin];
        let on_error = self.policies[step.plugin];
        let table = mapping.source.name.to_string();
        codec::encode(&mut self.buf, batch, &step.positions);
        let whole = plugin
            .transform_rows(step.table_id, &table, at, &self.buf)
            .and_then(|out| codec::decode(out, batch.len(), width).map_err(CallError::Invalid));
        let results: Vec<Result<Verdict, CallError>> = match whole {
            Ok(verdicts) => verdicts.into_iter().map(Ok).collect(),
            Err(e) if on_error == OnError::Stop => {
                return Err(fault(&plugin.name, mapping, None, &e.to_string()));
            }
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, table = %mapping.source.name, error = %e, rows = batch.len(), "plugin failed on a batch; retrying row by row");
                batch
                    .iter()
                    .zip(at.row..)
                    .map(|(change, row)| {
                        codec::encode(&mut self.buf, std::slice::from_ref(change), &step.positions);
                        plugin
                            .transform_rows(step.table_id, &table, &at.at_row(row), &self.buf)
                            .and_then(|out| {
                                codec::decode(out, 1, width).map_err(CallError::Invalid)
                            })
                            .map(|mut v| v.remove(0))
                    })
                    .collect()
            }
        };
        let mut kept = Vec::with_capacity(batch.len());
        for (mut change, result) in batch.drain(..).zip(results) {
            let applied = result.and_then(|verdict| apply(step, &mut change, verdict));
            match applied {
                Ok(true) => kept.push(change),
                Ok(false) => outcome.skipped += 1,
                Err(e) => {
                    let name = &plugin.name;
                    let error = e.to_string();
                    match on_error {
                        OnError::Stop => {
                            return Err(fault(name, mapping, Some(&change), &error));
                        }
                        OnError::Skip => {
                            tracing::warn!(plugin = %name, table = %mapping.source.name, op = change.op.as_str(), %error, "plugin fault: row skipped");
                            outcome.skipped += 1;
                        }
                        OnError::DeadLetter => {
                            tracing::warn!(plugin = %name, table = %mapping.source.name, op = change.op.as_str(), %error, "plugin fault: row sent to the dead-letter table");
                            outcome.dead_letters.push(DeadLetter {
                                plugin: name.clone(),
                                error: format!("plugin {name} {error}"),
                                row: change_json(mapping, &change),
                                op: change.op,
                            });
                        }
                    }
                }
            }
        }
        *batch = kept;
        Ok(())
    }
}

fn fault(
    plugin: &str,
    mapping: &TableMapping,
    change: Option<&RowChange>,
    error: &str,
) -> TransformError {
    let what = match change {
        Some(c) => format!("table {} ({} row)", mapping.source.name, c.op.as_str()),
        None => format!("table {} (whole batch)", mapping.source.name),
    };
    TransformError {
        message: format!("plugin {plugin} failed on {what}: it {error} (on_error = \"stop\")"),
    }
}

/// Applies one verdict to a change; `Ok(false)` means the plugin filtered it out.
fn apply(step: &RowStep, change: &mut RowChange, verdict: Verdict) -> Result<bool, CallError> {
    match verdict {
        Verdict::Keep => {
            // Computed columns arrive as NULL: keeping the row unchanged leaves them NULL.
            let required = |c: &super::layout::StepColumn| c.computed && (c.not_null || c.is_key);
            if change.new.is_some() {
                if let Some(c) = step.columns.iter().find(|c| required(c)) {
                    return Err(CallError::Invalid(format!(
                        "column {:?}: left NULL, but it is a computed NOT NULL or key column",
                        c.name
                    )));
                }
            }
            Ok(true)
        }
        Verdict::Skip => Ok(false),
        Verdict::Error(m) => Err(CallError::Plugin(
            super::bindings::wit::PluginError::Failed(m),
        )),
        Verdict::Route(t) => Err(CallError::Invalid(format!(
            "a route to table {t}, which this version of pgmorph does not support"
        ))),
        Verdict::Modified { old, new } => {
            if old.is_some() != change.old.is_some() || new.is_some() != change.new.is_some() {
                return Err(CallError::Invalid(format!(
                    "a {} change with rows added or removed",
                    change.op.as_str()
                )));
            }
            if let (Some(out), Some(row)) = (&old, &change.old) {
                check_row(step, out, row, false)?;
            }
            if let (Some(out), Some(row)) = (&new, &change.new) {
                check_row(step, out, row, true)?;
            }
            for (out, row) in [(old, &mut change.old), (new, &mut change.new)] {
                if let (Some(out), Some(row)) = (out, row.as_mut()) {
                    for (cell, &p) in out.into_iter().zip(&step.positions) {
                        if let Some(slot) = row.get_mut(p) {
                            *slot = cell;
                        }
                    }
                }
            }
            Ok(true)
        }
    }
}

/// Validates a row the plugin modified against the columns it declared.
fn check_row(step: &RowStep, out: &Row, input: &Row, is_new: bool) -> Result<(), CallError> {
    for ((cell, column), &p) in out.iter().zip(&step.columns).zip(&step.positions) {
        let bad = |why: String| {
            Err(CallError::Invalid(format!(
                "column {:?}: {why}",
                column.name
            )))
        };
        match cell {
            Cell::Unchanged if input.get(p) != Some(&Cell::Unchanged) => {
                return bad("the unchanged-TOAST marker on a value the source sent".into());
            }
            Cell::Unchanged => {}
            Cell::Null if column.is_key => return bad("NULL in a key column".into()),
            Cell::Null if is_new && column.not_null => {
                return bad("NULL in a NOT NULL column".into())
            }
            Cell::Null => {}
            Cell::Binary(_) => return bad("a binary value".into()),
            Cell::Text(text) => {
                if let Err(why) = validate::check(column.class, text) {
                    return bad(why);
                }
            }
        }
    }
    Ok(())
}

/// A change as JSON for the dead-letter table: `{"old": {col: text}, "new": {...}}`.
fn change_json(mapping: &TableMapping, change: &RowChange) -> serde_json::Value {
    mapping.change_json(change.old.as_ref(), change.new.as_ref())
}

impl Transform for PluginChain {
    fn map_table(
        &mut self,
        source: Arc<TableSchema>,
        dest_schema: &str,
    ) -> Result<TableMapping, TransformError> {
        if self.instances.is_empty() {
            return Ok(TableMapping::identity(source, dest_schema));
        }
        if let Some(old) = self.tables.remove(&source.oid) {
            for p in &mut self.instances {
                p.forget_table(old.id);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.generation = next_generation();
        let ids = vec![id; self.instances.len()];
        let composed = compose(&mut self.instances, &ids, source.clone(), dest_schema)
            .map_err(|message| TransformError { message })?;
        self.tables.insert(
            source.oid,
            TableState {
                source,
                id,
                steps: composed.steps.into(),
            },
        );
        Ok(composed.mapping)
    }

    fn transform_rows(
        &mut self,
        mapping: &TableMapping,
        batch: &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError> {
        outside_async(|| self.transform_one(mapping, &Provenance::default(), batch))
    }

    fn transform_batches(&mut self, batches: &mut [TableBatch]) -> Result<(), RowStepError> {
        outside_async(|| each_batch(batches, |m, at, changes| self.transform_one(m, at, changes)))
    }

    fn fork(&self) -> Result<Option<Box<dyn Transform>>, TransformError> {
        if self.instances.is_empty() {
            return Ok(None);
        }
        let mut instances = Vec::with_capacity(self.instances.len());
        for p in &self.instances {
            instances.push(p.fork().map_err(|e| TransformError {
                message: format!("plugin {} failed to start another instance: it {e}", p.name),
            })?);
        }
        Ok(Some(Box::new(Self {
            instances,
            policies: self.policies.clone(),
            tables: self.tables.clone(),
            next_id: self.next_id,
            buf: Vec::new(),
            generation: self.generation,
        })))
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

impl PluginChain {
    /// The row step of one batch through every plugin. Run off the async runtime (see
    /// [`outside_async`]), all plugins and batches of a step in one trip.
    fn transform_one(
        &mut self,
        mapping: &TableMapping,
        at: &Provenance,
        batch: &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError> {
        let mut outcome = RowOutcome::default();
        if !mapping.transforms_rows || mapping.skip || batch.is_empty() {
            return Ok(outcome);
        }
        let steps = match self.tables.get(&mapping.source.oid) {
            Some(state) if Arc::ptr_eq(&state.source, &mapping.source) || state.source == mapping.source => {
                Arc::clone(&state.steps)
            }
            _ => {
                return Err(TransformError {
                    message: format!(
                        "table {} reached the plugin row step without being mapped by the plugin chain first",
                        mapping.source.name
                    ),
                })
            }
        };
        for step in steps.iter() {
            self.run_step(step, mapping, at, batch, &mut outcome)?;
            if batch.is_empty() {
                break;
            }
        }
        Ok(outcome)
    }
}
