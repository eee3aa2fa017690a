//! `letter-case`: SynchDB's letter-casing strategy for schema, table and column names
//! (`lowercase`, `uppercase` or `asis`); mapping only, no per-row cost.

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{export, info, Config, Error, Mapping, Plugin, TableSchema};
use serde::Deserialize;

/// How names are cased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Strategy {
    /// Every name in lower case.
    Lowercase,
    /// Every name in upper case.
    Uppercase,
    /// Names as they are.
    #[default]
    Asis,
}

impl Strategy {
    /// The name cased; ASCII letters only, as PostgreSQL folds unquoted identifiers.
    fn apply(self, name: &str) -> String {
        match self {
            Strategy::Lowercase => name.to_ascii_lowercase(),
            Strategy::Uppercase => name.to_ascii_uppercase(),
            Strategy::Asis => name.to_string(),
        }
    }
}

/// `[plugins.<name>.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `strategy = "lowercase" | "uppercase" | "asis"`.
    #[serde(default)]
    strategy: Strategy,
}

/// The plugin.
pub struct LetterCase {
    strategy: Strategy,
}

impl Plugin for LetterCase {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        Ok(Self {
            strategy: settings.strategy,
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let cased = |name: &str| self.strategy.apply(name);
        let mut seen = BTreeMap::new();
        for column in &table.columns {
            let to = cased(&column.name);
            if let Some(other) = seen.insert(to.clone(), column.name.clone()) {
                return Err(Error::unsupported(format!(
                    "columns {other:?} and {:?} of table {} both become {to:?}",
                    column.name,
                    table.qualified_name()
                )));
            }
            if to != column.name {
                mapping.rename_column(&column.name, &to)?;
            }
        }
        let (schema, name) = (cased(&table.schema), cased(&table.name));
        if schema != table.schema || name != table.name {
            mapping.rename_table(&schema, &name);
            info!("{} -> {schema}.{name}", table.qualified_name());
        }
        Ok(mapping)
    }
}

export!(LetterCase);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::TestHost;
    use pgmorph_plugin_sdk::Column;

    fn table() -> TableSchema {
        TableSchema::new(
            "Sales",
            "OrderLines",
            vec![
                Column::new("Id", "int").key(),
                Column::new("customerName", "text"),
                Column::new("note", "text"),
            ],
        )
    }

    fn names(strategy: &str) -> (String, String, Vec<String>) {
        let mut host =
            TestHost::<LetterCase>::new(serde_json::json!({ "strategy": strategy })).unwrap();
        let m = host.map_table(&table()).unwrap();
        assert!(m.rows.is_none(), "mapping only");
        (
            m.schema,
            m.name,
            m.columns.into_iter().map(|c| c.name).collect(),
        )
    }

    #[test]
    fn each_strategy_cases_schema_table_and_column_names() {
        assert_eq!(
            names("lowercase"),
            (
                "sales".into(),
                "orderlines".into(),
                vec!["id".into(), "customername".into(), "note".into()]
            )
        );
        assert_eq!(
            names("uppercase"),
            (
                "SALES".into(),
                "ORDERLINES".into(),
                vec!["ID".into(), "CUSTOMERNAME".into(), "NOTE".into()]
            )
        );
        assert_eq!(
            names("asis"),
            (
                "Sales".into(),
                "OrderLines".into(),
                vec!["Id".into(), "customerName".into(), "note".into()]
            )
        );
    }

    #[test]
    fn names_that_collide_once_cased_are_refused() {
        let mut host =
            TestHost::<LetterCase>::new(serde_json::json!({ "strategy": "lowercase" })).unwrap();
        let t = TableSchema::new(
            "public",
            "t",
            vec![Column::new("id", "int").key(), Column::new("ID", "int")],
        );
        let err = host.map_table(&t).unwrap_err();
        assert!(err.message().contains("both become"), "{}", err.message());
        assert!(
            TestHost::<LetterCase>::new(serde_json::json!({ "strategy": "title" })).is_err(),
            "an unknown strategy is a config error"
        );
    }
}
