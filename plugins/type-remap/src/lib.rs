//! `type-remap`: config-driven column type changes with value conversion.
//!
//! Safe conversions (to text, integer widening, json -> jsonb, same class) cost nothing per row:
//! the destination casts the text form. Others ask for rows: `timestamptz -> timestamp` turns
//! the value into UTC wall time; conversions that can fail are checked value by value and a
//! failure is returned as an error, so the plugin's `on_error` policy decides.

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{
    export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, TypeClass, Verdict,
};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `columns = { "public.orders.amount" = "text" }`.
    #[serde(default)]
    columns: BTreeMap<String, String>,
    /// `types = { json = "jsonb" }`: by source type name (as in `type_sql`, modifiers ignored).
    #[serde(default)]
    types: BTreeMap<String, String>,
}

/// A conversion the row hook performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// Strip the `+00` of a UTC timestamptz.
    ToUtcTimestamp,
    /// Check the value parses as the target class.
    Check(TypeClass),
}

/// The plugin.
pub struct TypeRemap {
    settings: Settings,
    /// Per table (`schema.table` of the input), the converted columns by output name.
    conversions: BTreeMap<String, Vec<(String, Conversion)>>,
}

fn base_type(type_sql: &str) -> String {
    let t = type_sql.split('(').next().unwrap_or(type_sql);
    t.trim().to_ascii_lowercase()
}

fn conversion(from: TypeClass, to: TypeClass) -> Option<Conversion> {
    use TypeClass::*;
    match (from, to) {
        _ if from == to => None,
        (_, Text | Other) => None,
        (Integer, Numeric | Float) => None,
        (Timestamptz, Timestamp) => Some(Conversion::ToUtcTimestamp),
        (_, to) => Some(Conversion::Check(to)),
    }
}

impl Plugin for TypeRemap {
    fn init(config: Config) -> Result<Self, Error> {
        Ok(Self {
            settings: config.parse()?,
            conversions: BTreeMap::new(),
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let mut conversions = Vec::new();
        for column in &table.columns {
            let exact = format!("{}.{}", table.qualified_name(), column.name);
            let target = self
                .settings
                .columns
                .get(&exact)
                .or_else(|| self.settings.types.get(&base_type(&column.type_sql)));
            let Some(target) = target else { continue };
            mapping.set_type(&column.name, target)?;
            let to = TypeClass::of_sql(target).0;
            if let Some(conv) = conversion(column.type_class, to) {
                conversions.push((column.name.clone(), conv));
            }
        }
        if !conversions.is_empty() {
            mapping.want_rows(conversions.iter().map(|(c, _)| c.as_str()))?;
        }
        self.conversions.insert(table.qualified_name(), conversions);
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let conversions = &self.conversions[table.qualified_name()];
        change.for_each_row(|row| {
            for (column, conv) in conversions {
                if row.is_unchanged(column)? {
                    continue;
                }
                let Some(value) = row.get_str(column)? else {
                    continue;
                };
                match conv {
                    Conversion::ToUtcTimestamp => {
                        let utc = to_utc_timestamp(value).ok_or_else(|| {
                            Error::failed(format!(
                                "column {column:?}: {value:?} is not a UTC timestamptz"
                            ))
                        })?;
                        let utc = utc.to_string();
                        row.set_str(column, &utc)?;
                    }
                    Conversion::Check(class) => check(column, value, *class)?,
                }
            }
            Ok(())
        })?;
        Ok(Verdict::Keep)
    }
}

/// `2024-01-02 03:04:05.5+00` -> `2024-01-02 03:04:05.5` (the host's session is in UTC).
fn to_utc_timestamp(value: &str) -> Option<&str> {
    if value == "infinity" || value == "-infinity" {
        return Some(value);
    }
    value
        .strip_suffix("+00")
        .or_else(|| value.strip_suffix("+00:00"))
}

fn check(column: &str, value: &str, class: TypeClass) -> Result<(), Error> {
    let ok = match class {
        TypeClass::Integer => value.trim().parse::<i64>().is_ok(),
        TypeClass::Float => {
            value.trim().parse::<f64>().is_ok() || ["Infinity", "-Infinity"].contains(&value)
        }
        TypeClass::Numeric => value.trim().parse::<f64>().is_ok() || value == "NaN",
        TypeClass::Boolean => ["t", "f", "true", "false"].contains(&value),
        TypeClass::Json => serde_json::from_str::<serde_json::Value>(value).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "column {column:?}: {value:?} cannot be converted to {class:?}"
        )))
    }
}

export!(TypeRemap);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::{Column, Op};

    #[test]
    fn converts_timestamptz_and_checks_integers() {
        let mut host = TestHost::<TypeRemap>::new(serde_json::json!({
            "columns": { "public.e.at": "timestamp", "public.e.n": "bigint", "public.e.amount": "text" }
        }))
        .unwrap();
        let t = TableSchema::new(
            "public",
            "e",
            vec![
                Column::new("id", "int").key(),
                Column::new("at", "timestamptz"),
                Column::new("n", "text"),
                Column::new("amount", "numeric(10,2)"),
            ],
        );
        let m = host.map_table(&t).unwrap();
        assert_eq!(m.rows.as_deref().unwrap(), ["at", "n"]);
        let out = host
            .transform(
                &t,
                Op::Insert,
                None,
                Some(row(&[("at", "2024-01-02 03:04:05+00"), ("n", "7")])),
            )
            .unwrap();
        let Outcome::Kept { new: Some(new), .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(new["at"].as_deref(), Some("2024-01-02 03:04:05"));
        let out = host
            .transform(
                &t,
                Op::Insert,
                None,
                Some(row(&[("at", "2024-01-02 03:04:05+00"), ("n", "x")])),
            )
            .unwrap();
        assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
    }
}
