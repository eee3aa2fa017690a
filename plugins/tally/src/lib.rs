//! `tally`: a computed `tally` column holding the row's ordinal among the rows this plugin
//! instance handled. Shows per-instance state; the parallel-snapshot test counts instances by it.

use pgmorph_plugin_sdk::{export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};

/// The column every table gets.
const COLUMN: &str = "tally";

/// The plugin.
pub struct Tally {
    /// Rows this instance has handled.
    seen: i64,
}

impl Plugin for Tally {
    fn init(_config: Config) -> Result<Self, Error> {
        Ok(Self { seen: 0 })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        mapping.add_column(COLUMN, "bigint")?;
        Ok(mapping)
    }

    fn transform_row(&mut self, _table: &Table, change: &mut Change<'_>) -> Result<Verdict, Error> {
        if let Some(new) = change.new.as_mut() {
            self.seen += 1;
            new.set_i64(COLUMN, self.seen)?;
        }
        Ok(Verdict::Keep)
    }
}

export!(Tally);
