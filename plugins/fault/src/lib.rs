//! `fault`: a plugin that fails on purpose (trap, infinite loop, memory bomb, wrong-shaped
//! output, invalid values, errors, a hang in `init`), for the host's error-policy tests only.

use std::cell::Cell;

use pgmorph_plugin_sdk::bindings::exports::pgmorph::plugin::transform::Guest;
use pgmorph_plugin_sdk::bindings::pgmorph::plugin::types as wit;
use pgmorph_plugin_sdk::runtime;
use pgmorph_plugin_sdk::{Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// What to do wrong.
    mode: String,
    /// Only rows whose column equals `when_equals` (default: every row).
    #[serde(default)]
    when_column: Option<String>,
    /// See `when_column`.
    #[serde(default)]
    when_equals: Option<String>,
    /// The column `bad-value` and `null-key` write.
    #[serde(default)]
    column: Option<String>,
}

thread_local! {
    static CORRUPT: Cell<bool> = const { Cell::new(false) };
}

/// The plugin.
pub struct Fault {
    settings: Settings,
}

impl Fault {
    fn hit(&self, change: &Change) -> Result<bool, Error> {
        let Some(column) = &self.settings.when_column else {
            return Ok(true);
        };
        let Some(row) = change.row() else {
            return Ok(false);
        };
        Ok(row.get_str(column)? == self.settings.when_equals.as_deref())
    }
}

impl Plugin for Fault {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        if settings.mode == "init-error" {
            return Err(Error::config("fault plugin: init-error mode"));
        }
        if settings.mode == "init-loop" {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Ok(Self { settings })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        mapping.want_all_rows();
        Ok(mapping)
    }

    fn transform_row(&mut self, _table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        if !self.hit(change)? {
            return Ok(Verdict::Keep);
        }
        let column = self.settings.column.clone().unwrap_or_default();
        match self.settings.mode.as_str() {
            "trap" => panic!("fault plugin: trap"),
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "wrong-shape" => CORRUPT.with(|c| c.set(true)),
            "bad-value" => {
                if let Some(new) = change.new.as_mut() {
                    new.set_str(&column, "not a number")?;
                }
            }
            "null-key" => {
                if let Some(new) = change.new.as_mut() {
                    new.set_null(&column)?;
                }
            }
            "error" => return Err(Error::failed("fault plugin: error on this row")),
            _ => {}
        }
        Ok(Verdict::Keep)
    }
}

thread_local! {
    static BATCH_ERROR: Cell<bool> = const { Cell::new(false) };
}

/// The hand-written export: the SDK runtime plus output corruption and whole-batch errors.
#[allow(dead_code)]
struct Export;

impl Guest for Export {
    fn init(config: String) -> Result<(), wit::PluginError> {
        BATCH_ERROR.with(|b| b.set(config.contains("\"batch-error\"")));
        runtime::guest_init::<Fault>(config)
    }

    fn map_table(
        table: u32,
        schema: wit::TableSchema,
    ) -> Result<wit::TableMapping, wit::PluginError> {
        runtime::guest_map_table::<Fault>(table, schema)
    }

    fn transform_rows(table: u32, batch: Vec<u8>) -> Result<Vec<u8>, wit::PluginError> {
        if BATCH_ERROR.with(|b| b.get()) {
            return Err(wit::PluginError::Failed(
                "fault plugin: batch-error mode".into(),
            ));
        }
        CORRUPT.with(|c| c.set(false));
        let mut out = runtime::guest_transform_rows::<Fault>(table, batch)?;
        if CORRUPT.with(|c| c.get()) {
            // A "kept with new values" verdict whose row has no cells: wrong column count.
            out.extend_from_slice(&[1, 2]);
        }
        Ok(out)
    }
}

#[cfg(target_arch = "wasm32")]
pgmorph_plugin_sdk::bindings::__export_world!(Export with_types_in pgmorph_plugin_sdk::bindings);
