// Shared source of `stamp` (v1) and `stamp-v2`: the two differ only in `VERSION`.

use pgmorph_plugin_sdk::{export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The computed column to add to every table (default `stamped_by`).
    #[serde(default = "default_column")]
    column: String,
}

fn default_column() -> String {
    "stamped_by".to_string()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            column: default_column(),
        }
    }
}

/// The plugin.
pub struct Stamp {
    settings: Settings,
}

impl Plugin for Stamp {
    fn init(config: Config) -> Result<Self, Error> {
        Ok(Self {
            settings: config.parse()?,
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        mapping.add_column(&self.settings.column, "text")?;
        Ok(mapping)
    }

    fn transform_row(&mut self, _table: &Table, change: &mut Change<'_>) -> Result<Verdict, Error> {
        let column = self.settings.column.clone();
        if let Some(new) = change.new.as_mut() {
            new.set_str(&column, VERSION)?;
        }
        Ok(Verdict::Keep)
    }
}

export!(Stamp);
