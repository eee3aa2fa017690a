//! `passthrough`: changes nothing. With `rows = true` it asks for every row and column and keeps
//! them, which measures the bare cost of crossing into Wasm.

use pgmorph_plugin_sdk::{export, Config, Error, Mapping, Plugin, TableSchema};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `rows = true`: see every row (default: mapping only, no per-row cost).
    #[serde(default)]
    rows: bool,
}

/// The plugin.
pub struct Passthrough {
    settings: Settings,
}

impl Plugin for Passthrough {
    fn init(config: Config) -> Result<Self, Error> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        if self.settings.rows {
            mapping.want_all_rows();
        }
        Ok(mapping)
    }
}

export!(Passthrough);
