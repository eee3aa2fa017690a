//! Runs a plugin natively, through the same batch encoding the host uses, so plugin authors test
//! with a plain `cargo test`.
//!
//! ```ignore
//! let mut host = TestHost::<Mask>::new(serde_json::json!({ "columns": ["email"] })).unwrap();
//! let table = TableSchema::new("public", "users", vec![Column::new("id", "int").key(), Column::new("email", "text")]);
//! let out = host.transform(&table, Op::Insert, None, Some(row(&[("id", "1"), ("email", "a@b.c")]))).unwrap();
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::runtime::Runtime;
use crate::{Config, Error, Level, Mapping, Op, Plugin, TableSchema};

/// A row in a test: output column name to text value (`None` for NULL).
pub type TestRow = BTreeMap<String, Option<String>>;

/// Builds a [`TestRow`] from `(column, text)` pairs.
pub fn row(cells: &[(&str, &str)]) -> TestRow {
    cells
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// What the plugin did with one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept, with these rows (columns the row hook did not see are passed through).
    Kept {
        /// The old row.
        old: Option<TestRow>,
        /// The new row.
        new: Option<TestRow>,
    },
    /// Filtered out.
    Skipped,
    /// The row hook returned an error for this change.
    Failed(String),
}

thread_local! {
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn capture_log(level: Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
    LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
}

/// Runs a plugin natively.
pub struct TestHost<P> {
    runtime: Runtime<P>,
    tables: HashMap<String, (u32, Mapping)>,
}

impl<P: Plugin> TestHost<P> {
    /// Initializes the plugin with a JSON config (`serde_json::Value::Null` for none).
    pub fn new(config: serde_json::Value) -> Result<Self, Error> {
        // Round-trip through text as the host does.
        let config = Config::from_json(&config.to_string())?;
        Ok(Self {
            runtime: Runtime::new(config)?,
            tables: HashMap::new(),
        })
    }

    /// Runs the mapping hook.
    pub fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let id = self.tables.len() as u32 + 1;
        let mapping = self.runtime.map_table(id, table.clone())?;
        self.tables
            .insert(table.qualified_name(), (id, mapping.clone()));
        Ok(mapping)
    }

    /// Runs one change through the row hook (mapping the table first if needed). Rows are given
    /// in the plugin's output layout, by output column name.
    pub fn transform(
        &mut self,
        table: &TableSchema,
        op: Op,
        old: Option<TestRow>,
        new: Option<TestRow>,
    ) -> Result<Outcome, Error> {
        if !self.tables.contains_key(&table.qualified_name()) {
            self.map_table(table)?;
        }
        let (id, mapping) = self.tables[&table.qualified_name()].clone();
        let Some(columns) = mapping.rows else {
            return Ok(Outcome::Kept { old, new });
        };
        let pick = |r: &Option<TestRow>| {
            r.as_ref().map(|r| {
                columns
                    .iter()
                    .map(|c| r.get(c).cloned().flatten())
                    .collect::<Vec<_>>()
            })
        };
        let batch = crate::codec::encode_batch(&[(op, pick(&old), pick(&new))]);
        let out = self.runtime.transform_rows(id, &batch)?;
        crate::codec::decode_outcome(&out, &columns, old, new)
    }

    /// Takes the lines the plugin logged on this thread so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}
