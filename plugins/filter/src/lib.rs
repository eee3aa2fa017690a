//! `filter`: skip tables by pattern, columns by pattern, and rows by a simple predicate.

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{
    export, Change, Config, Error, Mapping, Op, Plugin, Row, Table, TableSchema, Verdict,
};
use serde::Deserialize;

/// `[plugins.<name>.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `skip_tables = ["public.audit_*"]`: `*` matches any run of characters.
    #[serde(default)]
    skip_tables: Vec<String>,
    /// `skip_columns = ["public.users.password_hash", "*.note"]`.
    #[serde(default)]
    skip_columns: Vec<String>,
    /// `skip_rows = [{ table = "public.orders", column = "status", equals = "test" }]`.
    #[serde(default)]
    skip_rows: Vec<RowRule>,
}

/// Skip a row when `column` ... (exactly one test).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowRule {
    /// Table pattern.
    table: String,
    /// The column tested (output name of this plugin).
    column: String,
    /// ... equals this text.
    #[serde(default)]
    equals: Option<String>,
    /// ... differs from this text (NULL does not differ: it is unknown).
    #[serde(default)]
    not_equals: Option<String>,
    /// ... is one of these texts.
    #[serde(default, rename = "in")]
    in_list: Option<Vec<String>>,
    /// ... is NULL (`true`) or is not NULL (`false`).
    #[serde(default)]
    is_null: Option<bool>,
}

impl RowRule {
    fn matches(&self, row: &Row) -> Result<bool, Error> {
        if row.is_unchanged(&self.column)? {
            return Ok(false);
        }
        let value = row.get_str(&self.column)?;
        Ok(
            match (&self.equals, &self.not_equals, &self.in_list, self.is_null) {
                (Some(e), _, _, _) => value == Some(e.as_str()),
                (_, Some(n), _, _) => value.is_some_and(|v| v != n),
                (_, _, Some(list), _) => value.is_some_and(|v| list.iter().any(|l| l == v)),
                (_, _, _, Some(is_null)) => value.is_none() == is_null,
                _ => false,
            },
        )
    }
}

/// `*` wildcard match.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(text) = text.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .any(|i| glob(rest, &text[i..]))
        }
    }
}

/// The plugin.
pub struct Filter {
    settings: Settings,
    /// Rules per table (input `schema.table`), with whether the rule column is a key.
    rules: BTreeMap<String, Vec<(RowRule, bool)>>,
}

impl Plugin for Filter {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        for r in &settings.skip_rows {
            let tests = usize::from(r.equals.is_some())
                + usize::from(r.not_equals.is_some())
                + usize::from(r.in_list.is_some())
                + usize::from(r.is_null.is_some());
            if tests != 1 {
                return Err(Error::config(format!(
                    "skip_rows rule on {}.{} needs exactly one of equals, not_equals, in, is_null",
                    r.table, r.column
                )));
            }
        }
        Ok(Self {
            settings,
            rules: BTreeMap::new(),
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let qualified = table.qualified_name();
        if self
            .settings
            .skip_tables
            .iter()
            .any(|p| glob(p, &qualified))
        {
            return Ok(Mapping::skip_table());
        }
        let mut mapping = Mapping::from_schema(table);
        let rules: Vec<(RowRule, bool)> = self
            .settings
            .skip_rows
            .iter()
            .filter(|r| glob(&r.table, &qualified))
            .map(|r| {
                let column = table.column(&r.column).ok_or_else(|| {
                    Error::config(format!(
                        "skip_rows: {qualified} has no column {:?}",
                        r.column
                    ))
                })?;
                Ok((r.clone(), column.is_key))
            })
            .collect::<Result<_, Error>>()?;
        for column in &table.columns {
            let full = format!("{qualified}.{}", column.name);
            if self.settings.skip_columns.iter().any(|p| glob(p, &full)) {
                if rules.iter().any(|(r, _)| r.column == column.name) {
                    return Err(Error::config(format!(
                        "column {full} is both skipped and used by skip_rows"
                    )));
                }
                mapping.drop_column(&column.name)?;
            }
        }
        if !rules.is_empty() {
            mapping.want_rows(rules.iter().map(|(r, _)| r.column.as_str()))?;
        }
        self.rules.insert(qualified, rules);
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let rules = &self.rules[table.qualified_name()];
        for (rule, is_key) in rules {
            let row = match (change.op, &change.new, &change.old) {
                (Op::Delete, _, Some(old)) if *is_key => old,
                (Op::Delete, _, _) => continue,
                (_, Some(new), _) => new,
                _ => continue,
            };
            if rule.matches(row)? {
                return Ok(Verdict::Skip);
            }
        }
        Ok(Verdict::Keep)
    }
}

export!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::Column;

    #[test]
    fn globs() {
        assert!(glob("public.audit_*", "public.audit_log"));
        assert!(glob("*.tmp_*", "x.tmp_1"));
        assert!(!glob("public.a", "public.ab"));
    }

    #[test]
    fn skips_tables_columns_and_rows() {
        let mut host = TestHost::<Filter>::new(serde_json::json!({
            "skip_tables": ["public.audit_*"],
            "skip_columns": ["*.secret"],
            "skip_rows": [{ "table": "public.*", "column": "status", "equals": "test" }]
        }))
        .unwrap();
        let audit = TableSchema::new("public", "audit_log", vec![Column::new("id", "int").key()]);
        assert!(host.map_table(&audit).unwrap().skip);
        let t = TableSchema::new(
            "public",
            "orders",
            vec![
                Column::new("id", "int").key(),
                Column::new("status", "text"),
                Column::new("secret", "text"),
            ],
        );
        let m = host.map_table(&t).unwrap();
        assert_eq!(m.columns.len(), 2);
        let skip = host
            .transform(&t, Op::Insert, None, Some(row(&[("status", "test")])))
            .unwrap();
        assert_eq!(skip, Outcome::Skipped);
        let keep = host
            .transform(&t, Op::Insert, None, Some(row(&[("status", "paid")])))
            .unwrap();
        assert!(matches!(keep, Outcome::Kept { .. }));
    }
}
