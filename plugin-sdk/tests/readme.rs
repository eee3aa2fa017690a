//! The code of `plugin-sdk/README.md` compiles and its test passes: each snippet below is also
//! checked to appear in the README (whitespace and `//` comments aside), so the two cannot drift.

#![allow(missing_docs)] // the README's code, as authors would write it

/// Compiles the code and keeps its text in `$name`.
macro_rules! snippet {
    ($name:ident, $($code:tt)*) => {
        const $name: &str = stringify!($($code)*);
        $($code)*
    };
}

/// Text without `//` comments and whitespace.
fn squeezed(text: &str) -> String {
    text.lines()
        .map(|l| l.split(" //").next().unwrap_or(l))
        .collect::<String>()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn assert_in_readme(snippet: &str) {
    let readme = include_str!("../README.md");
    assert!(
        squeezed(readme).contains(&squeezed(snippet)),
        "README.md lacks this code (or it changed there):\n{snippet}"
    );
}

snippet!(PLUGIN,
use pgmorph_plugin_sdk::{export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Settings { columns: Vec<String> }

pub struct Upper { settings: Settings }

impl Plugin for Upper {
    fn init(config: Config) -> Result<Self, Error> {
        Ok(Upper { settings: config.parse()? })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let wanted: Vec<&str> = self.settings.columns.iter().map(String::as_str)
            .filter(|c| table.column(c).is_some()).collect();
        if !wanted.is_empty() {
            mapping.want_rows(wanted)?;
        }
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let columns: Vec<String> = table.row_columns.iter().map(|c| c.name.clone()).collect();
        change.for_each_row(|row| {
            for c in &columns {
                if row.is_unchanged(c)? { continue; }
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

export!(Upper);
);

#[test]
fn the_readme_plugin_and_its_native_test_compile_and_pass() {
    snippet!(TESTING,
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::{Column, Op, TableSchema};

    let mut host = TestHost::<Upper>::new(serde_json::json!({ "columns": ["name"] })).unwrap();
    let table = TableSchema::new("public", "users", vec![Column::new("id", "int").key(), Column::new("name", "text")]);
    let out = host.transform(&table, Op::Insert, None, Some(row(&[("id", "1"), ("name", "ada")]))).unwrap();
    assert_eq!(out, Outcome::Kept { old: None, new: Some(row(&[("id", "1"), ("name", "ADA")])) });
    );
    assert_in_readme(PLUGIN);
    assert_in_readme(TESTING);
}
