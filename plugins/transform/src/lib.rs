//! `transform`: SynchDB-style per-column expressions. Each configured column's value goes
//! through a SQL scalar expression in which `%d` is the value, parsed once at `init` and
//! evaluated by the plugin itself, so the snapshot and CDC give the same result (SynchDB runs
//! the expression as SQL in two different ways, and `'%d'` means the column name in one and
//! the value in the other).
//!
//! ```toml
//! [plugins.30-transform.config.columns]
//! "public.orders.id" = "%d + 1000000"
//! "public.orders.note" = "'>>' || coalesce(%d, '-') || '<<'"
//! "*.status" = { expr = "CASE WHEN %d::int > 0 THEN 'on' ELSE 'off' END", type = "text" }
//! ```
//!
//! A key is `schema.table.column`, SynchDB's `database.schema.table.column` (the database part
//! is ignored) or `*.column` (every table). `type` also changes the column's destination type.
//! Key columns are transformed in old rows too, so updates and deletes find the rows.

pub mod expr;

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{
    export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict,
};
use serde::Deserialize;

use expr::{Expr, Value};

/// `[plugins.<name>.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Column pattern -> expression.
    #[serde(default)]
    columns: BTreeMap<String, Rule>,
}

/// An expression, or an expression and the column's new type.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Rule {
    Expr(String),
    Typed {
        expr: String,
        #[serde(rename = "type")]
        type_sql: Option<String>,
    },
}

/// A parsed rule.
struct Compiled {
    /// `(schema, table)`, or `None` for `*.column`.
    table: Option<(String, String)>,
    column: String,
    expr: Expr,
    type_sql: Option<String>,
}

/// The plugin.
pub struct Transform {
    rules: Vec<Compiled>,
    /// Per input table (`schema.table`): the transformed columns and their rule.
    columns: BTreeMap<String, Vec<(String, usize)>>,
}

fn compile(pattern: &str, rule: &Rule) -> Result<Compiled, Error> {
    let (text, type_sql) = match rule {
        Rule::Expr(e) => (e, None),
        Rule::Typed { expr, type_sql } => (expr, type_sql.clone()),
    };
    let parts: Vec<&str> = pattern.split('.').collect();
    let (table, column) = match parts.as_slice() {
        ["*", c] => (None, c),
        [s, t, c] | [_, s, t, c] => (Some((s.to_string(), t.to_string())), c),
        _ => {
            return Err(Error::config(format!(
                "column {pattern:?} must be schema.table.column, database.schema.table.column or *.column"
            )))
        }
    };
    let expr = Expr::parse(text)
        .map_err(|e| Error::config(format!("expression for {pattern} ({text:?}): {e}")))?;
    Ok(Compiled {
        table,
        column: column.to_string(),
        expr,
        type_sql,
    })
}

impl Compiled {
    fn matches(&self, table: &TableSchema) -> bool {
        self.table
            .as_ref()
            .is_none_or(|(s, t)| *s == table.schema && *t == table.name)
    }
}

impl Plugin for Transform {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        let rules = settings
            .columns
            .iter()
            .map(|(pattern, rule)| compile(pattern, rule))
            .collect::<Result<_, _>>()?;
        Ok(Transform {
            rules,
            columns: BTreeMap::new(),
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        let mut chosen: Vec<(String, usize)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let present = table.column(&rule.column).is_some();
            let taken = chosen.iter().any(|(c, _)| *c == rule.column);
            // A rule for this table wins over `*.column` (ordered after it by the map).
            if !present || !rule.matches(table) || (taken && rule.table.is_none()) {
                continue;
            }
            chosen.retain(|(c, _)| *c != rule.column);
            chosen.push((rule.column.clone(), i));
        }
        for (column, i) in &chosen {
            if let Some(t) = &self.rules[*i].type_sql {
                mapping.set_type(column, t)?;
            }
        }
        if !chosen.is_empty() {
            mapping.want_rows(chosen.iter().map(|(c, _)| c.as_str()))?;
        }
        self.columns.insert(table.qualified_name(), chosen);
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let Some(columns) = self.columns.get(table.qualified_name()) else {
            return Ok(Verdict::Keep);
        };
        let rules = &self.rules;
        change.for_each_row(|row| {
            for (column, i) in columns {
                if row.is_unchanged(column)? {
                    continue; // an unchanged TOAST value: the destination keeps its own
                }
                let value = row
                    .get_str(column)?
                    .map_or(Value::Null, |t| Value::Text(t.to_string()));
                let out = rules[*i]
                    .expr
                    .eval(&value)
                    .map_err(|e| Error::failed(format!("transform of {column} failed: {e}")))?;
                match out.to_text() {
                    Some(t) => row.set_str(column, &t)?,
                    None => row.set_null(column)?,
                }
            }
            Ok(())
        })?;
        Ok(Verdict::Keep)
    }
}

export!(Transform);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::{Column, Op};

    fn orders() -> TableSchema {
        TableSchema::new(
            "public",
            "orders",
            vec![
                Column::new("id", "bigint").key(),
                Column::new("note", "text"),
                Column::new("status", "int"),
            ],
        )
    }

    fn host() -> TestHost<Transform> {
        TestHost::new(serde_json::json!({ "columns": {
            "postgres.public.orders.id": "%d + 1000000",
            "public.orders.note": "'>>' || coalesce(%d, '-') || '<<'",
            "*.status": { "expr": "CASE WHEN %d > 0 THEN 'on' ELSE 'off' END", "type": "text" },
            "public.other.note": "upper(%d)",
        }}))
        .unwrap()
    }

    #[test]
    fn maps_only_the_configured_columns_and_their_types() {
        let mapping = host().map_table(&orders()).unwrap();
        let rows = mapping.rows.clone().unwrap();
        assert_eq!(rows, ["status", "id", "note"]);
        let status = mapping.columns.iter().find(|c| c.name == "status").unwrap();
        assert_eq!(status.type_sql, "text");
    }

    #[test]
    fn transforms_new_rows_and_the_keys_of_old_rows() {
        let mut host = host();
        let new = row(&[("id", "7"), ("note", "hi"), ("status", "1")]);
        let out = host
            .transform(&orders(), Op::Update, Some(row(&[("id", "7")])), Some(new))
            .unwrap();
        let Outcome::Kept { old, new } = out else {
            panic!("kept: {out:?}")
        };
        assert_eq!(old.unwrap()["id"], Some("1000007".to_string()));
        let new = new.unwrap();
        assert_eq!(new["id"], Some("1000007".to_string()));
        assert_eq!(new["note"], Some(">>hi<<".to_string()));
        assert_eq!(new["status"], Some("on".to_string()));
    }

    #[test]
    fn a_bad_expression_or_pattern_fails_init_and_naming_it() {
        let err = TestHost::<Transform>::new(serde_json::json!({
            "columns": { "public.t.c": "%d +" }
        }))
        .err()
        .unwrap();
        assert!(err.message().contains("public.t.c"), "{}", err.message());
        let err = TestHost::<Transform>::new(serde_json::json!({ "columns": { "c": "%d" } }))
            .err()
            .unwrap();
        assert!(
            err.message().contains("schema.table.column"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_value_the_expression_cannot_take_is_a_row_error() {
        let mut host = TestHost::<Transform>::new(serde_json::json!({
            "columns": { "public.orders.note": "%d::int + 1" }
        }))
        .unwrap();
        let out = host
            .transform(
                &orders(),
                Op::Insert,
                None,
                Some(row(&[("id", "1"), ("note", "x")])),
            )
            .unwrap();
        let Outcome::Failed(err) = out else {
            panic!("a failed row: {out:?}")
        };
        assert!(err.contains("transform of note failed"), "{err}");
        assert!(err.contains("\"x\" is not a number"), "{err}");
    }
}
