//! The plugin checks of `pgmorph validate`: the configured chain loads, maps every selected
//! table, and its mapping neither lands two tables in one destination table nor drops a
//! primary-key column.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pgmorph::config::Config;
use pgmorph::error_chain::one_line;
use pgmorph::model::{TableMapping, TableSchema};
use pgmorph::plugin::reload::plugin_dir;

use super::report::{Check, Level, Report};

/// Loads the chain and maps `tables`; returns the destination schemas the mapping uses.
pub fn check(
    config: &Config,
    plugins: Option<&Path>,
    dest_schema: &str,
    tables: &[TableSchema],
    report: &mut Report,
) -> Vec<String> {
    let mut schemas = vec![dest_schema.to_string()];
    let mut transform = match crate::cli::transform_setup::build(config, plugins) {
        Ok(t) => t,
        Err(e) => {
            report.push(Check::bad(
                "plugins.chain",
                Level::Error,
                format!("the plugin chain does not load: {}", one_line(e.as_ref())),
                "fix the plugin or its [plugins.<name>] settings (`pgmorph plugin check FILE` names the problem)",
            ));
            return schemas;
        }
    };
    report.push(Check::ok(
        "plugins.chain",
        match plugin_dir(config, plugins) {
            Some(dir) => format!("the plugin chain in {} loads", dir.display()),
            None => "no plugins: tables keep their names and columns".to_string(),
        },
    ));
    let mut mapped = Vec::new();
    for t in tables {
        match transform.map_table(Arc::new(t.clone()), dest_schema) {
            Ok(m) => mapped.push(m),
            Err(e) => report.push(Check::bad(
                format!("plugins.mapping:{}", t.name),
                Level::Error,
                format!("mapping {} failed: {e}", t.name),
                "fix the plugin or its config",
            )),
        }
    }
    let problems = mapping_problems(&mapped);
    if problems.is_empty() && !mapped.is_empty() {
        report.push(Check::ok(
            "plugins.mapping",
            format!(
                "{} tables mapped; no two share a destination, no primary-key column dropped",
                mapped.len()
            ),
        ));
    }
    report.checks.extend(problems);
    schemas.extend(
        mapped
            .iter()
            .filter(|m| !m.skip)
            .map(|m| m.destination.schema.clone()),
    );
    schemas.sort();
    schemas.dedup();
    schemas
}

/// Destination tables fed by several source tables, and mappings that drop a primary-key
/// column (updates and deletes could no longer find their row).
pub fn mapping_problems(mapped: &[TableMapping]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut by_destination: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in mapped.iter().filter(|m| !m.skip) {
        by_destination
            .entry(m.destination.to_string())
            .or_default()
            .push(m.source.name.to_string());
    }
    for (dest, sources) in by_destination.iter().filter(|(_, s)| s.len() > 1) {
        out.push(Check::bad(
            format!("plugins.mapping:{dest}"),
            Level::Error,
            format!("{} all map to destination table {dest}", sources.join(", ")),
            "give each source table its own destination name in the plugin's config",
        ));
    }
    for m in mapped.iter().filter(|m| !m.skip) {
        let dropped: Vec<&str> = m
            .source
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| c.is_key && !m.columns.iter().any(|d| d.source_index == Some(*i)))
            .map(|(_, c)| c.name.as_str())
            .collect();
        if !dropped.is_empty() {
            out.push(Check::bad(
                format!("plugins.mapping:{}", m.source.name),
                Level::Error,
                format!(
                    "the mapping of {} drops primary-key column {}",
                    m.source.name,
                    dropped.join(", ")
                ),
                "keep the key columns in the plugin's mapping (rename them instead of dropping)",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph::model::{Column, ReplicaIdentity, TableName};

    fn table(name: &str) -> Arc<TableSchema> {
        let column = |name: &str, is_key| Column {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_sql: "integer".into(),
            not_null: is_key,
            is_key,
        };
        Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("public", name),
            columns: vec![column("id", true), column("v", false)],
            identity: ReplicaIdentity::Default,
            has_primary_key: true,
        })
    }

    #[test]
    fn two_tables_in_one_destination_and_a_dropped_key_are_named() {
        let a = TableMapping::identity(table("a"), "dst");
        let mut b = TableMapping::identity(table("b"), "dst");
        b.destination = a.destination.clone();
        let mut c = TableMapping::identity(table("c"), "dst");
        c.columns.remove(0);
        let problems = mapping_problems(&[a.clone(), b, c]);
        assert_eq!(problems.len(), 2);
        assert!(problems[0]
            .message
            .contains("public.a, public.b all map to destination table dst.a"));
        assert!(problems[1].message.contains("drops primary-key column id"));
        assert!(mapping_problems(&[a]).is_empty());
    }

    #[test]
    fn skipped_tables_collide_with_nothing() {
        let a = TableMapping::identity(table("a"), "dst");
        let mut b = TableMapping::identity(table("b"), "dst");
        b.destination = a.destination.clone();
        b.skip = true;
        assert!(mapping_problems(&[a, b]).is_empty());
    }
}
