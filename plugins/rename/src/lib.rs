//! `rename`: config-driven schema, table and column renames; mapping only, no per-row cost.

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{export, info, Config, Error, Mapping, Plugin, TableSchema};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `schemas = { public = "sales" }`.
    #[serde(default)]
    schemas: BTreeMap<String, String>,
    /// `tables = { "public.orders" = "sales.orders_v2" }`: the table lands in the schema named
    /// (a bare target keeps the source schema: `"public.orders" = "orders_v2"` lands in `public`).
    #[serde(default)]
    tables: BTreeMap<String, String>,
    /// `columns = { "public.orders.cust_id" = "customer_id", "*.created" = "created_at" }`.
    #[serde(default)]
    columns: BTreeMap<String, String>,
}

/// The plugin.
pub struct Rename {
    settings: Settings,
}

impl Plugin for Rename {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        for key in settings.columns.keys() {
            if !key.contains('.') {
                return Err(Error::config(format!(
                    "columns key {key:?} must be \"schema.table.column\" or \"*.column\""
                )));
            }
        }
        Ok(Self { settings })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let qualified = table.qualified_name();
        if let Some(target) = self.settings.tables.get(&qualified) {
            match target.split_once('.') {
                Some((schema, name)) => mapping.rename_table(schema, name),
                None => mapping.rename_table(&table.schema, target),
            };
        } else if let Some(schema) = self.settings.schemas.get(&table.schema) {
            mapping.rename_table(schema, &table.name);
        }
        for column in &table.columns {
            let exact = format!("{qualified}.{}", column.name);
            let any = format!("*.{}", column.name);
            if let Some(to) = self
                .settings
                .columns
                .get(&exact)
                .or(self.settings.columns.get(&any))
            {
                mapping.rename_column(&column.name, to)?;
            }
        }
        if mapping.schema != table.schema || mapping.name != table.name {
            info!("{qualified} -> {}.{}", mapping.schema, mapping.name);
        }
        Ok(mapping)
    }
}

export!(Rename);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::TestHost;
    use pgmorph_plugin_sdk::Column;

    #[test]
    fn renames_tables_and_columns() {
        let mut host = TestHost::<Rename>::new(serde_json::json!({
            "tables": { "public.orders": "sales.orders_v2" },
            "columns": { "public.orders.cust_id": "customer_id" }
        }))
        .unwrap();
        let t = TableSchema::new(
            "public",
            "orders",
            vec![
                Column::new("id", "int").key(),
                Column::new("cust_id", "int"),
            ],
        );
        let m = host.map_table(&t).unwrap();
        assert_eq!((m.schema.as_str(), m.name.as_str()), ("sales", "orders_v2"));
        assert_eq!(m.columns[1].name, "customer_id");
        assert!(m.rows.is_none());
    }
}
