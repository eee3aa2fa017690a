//! `{{name}}`: upper-cases the text of the configured columns. A starting point: replace the
//! mapping and the row hook with your own.
//!
//! ```toml
//! [plugins.{{name}}.config]
//! columns = ["name"]          # columns to upper-case, in every table that has them
//! ```

use pgmorph_plugin_sdk::{
    export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict,
};
use serde::Deserialize;

/// The plugin's config (`[plugins.<stem>.config]`, handed to `init` as JSON).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    columns: Vec<String>,
}

/// The plugin: its settings, read once by `init`.
pub struct {{type_name}} {
    settings: Settings,
}

impl Plugin for {{type_name}} {
    fn init(config: Config) -> Result<Self, Error> {
        Ok({{type_name}} {
            settings: config.parse()?,
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let wanted: Vec<&str> = self
            .settings
            .columns
            .iter()
            .map(String::as_str)
            .filter(|c| table.column(c).is_some())
            .collect();
        if !wanted.is_empty() {
            // Only these columns cross per row; other tables cost nothing per row.
            mapping.want_rows(wanted)?;
        }
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let columns: Vec<String> = table.row_columns.iter().map(|c| c.name.clone()).collect();
        change.for_each_row(|row| {
            for c in &columns {
                if row.is_unchanged(c)? {
                    continue; // an unchanged TOAST value: leave it
                }
                if let Some(v) = row.get_str(c)? {
                    let upper = v.to_uppercase();
                    row.set_str(c, &upper)?;
                }
            }
            Ok(())
        })?;
        Ok(Verdict::Keep)
    }
}

export!({{type_name}});

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::{Column, Op};

    fn users() -> TableSchema {
        TableSchema::new(
            "public",
            "users",
            vec![Column::new("id", "int").key(), Column::new("name", "text")],
        )
    }

    #[test]
    fn upper_cases_the_configured_columns() {
        let mut host =
            TestHost::<{{type_name}}>::new(serde_json::json!({ "columns": ["name"] })).unwrap();
        let out = host
            .transform(
                &users(),
                Op::Insert,
                None,
                Some(row(&[("id", "1"), ("name", "ada")])),
            )
            .unwrap();
        let want = row(&[("id", "1"), ("name", "ADA")]);
        assert_eq!(
            out,
            Outcome::Kept {
                old: None,
                new: Some(want)
            }
        );
    }

    #[test]
    fn asks_for_no_rows_without_columns() {
        let mut host = TestHost::<{{type_name}}>::new(serde_json::Value::Null).unwrap();
        let mapping = host.map_table(&users()).unwrap();
        assert_eq!(mapping.rows, None);
    }
}
