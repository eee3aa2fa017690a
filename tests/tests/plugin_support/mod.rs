//! Shared helpers of the plugin tests: the real `.wasm` files built by `tests/build.rs`, sample
//! schemas and rows.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgmorph::config::Config;
use pgmorph::model::{Cell, Column, Op, ReplicaIdentity, Row, RowChange, TableName, TableSchema};
use pgmorph::plugin::{LoadOptions, PluginChain, PluginError};
use pgmorph_e2e::Pair;

/// The `.wasm` file of an example plugin crate (`"type-remap"` -> `pgmorph_plugin_type_remap.wasm`).
pub fn wasm(krate: &str) -> PathBuf {
    Path::new(env!("PGMORPH_PLUGIN_DIR"))
        .join(format!("pgmorph_plugin_{}.wasm", krate.replace('-', "_")))
}

/// Load options sharing one compiled-component cache across test runs.
pub fn options() -> LoadOptions {
    LoadOptions {
        cache_dir: Some(PathBuf::from(env!("PGMORPH_PLUGIN_CACHE"))),
    }
}

/// A plugin directory holding `stem.wasm` copies of example plugins, and the connector config
/// with the given `[plugins.<stem>]` bodies; returns the loaded chain.
pub fn chain(plugins: &[(&str, &str, &str)]) -> Result<PluginChain, PluginError> {
    let (dir, config) = plugin_dir(plugins);
    let chain = PluginChain::load_with(dir.path(), &config.plugins, &options());
    drop(dir);
    chain
}

/// The plugin directory and config of [`chain`], for tests that load it themselves.
pub fn plugin_dir(plugins: &[(&str, &str, &str)]) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "name = \"t\"\n[source]\nurl = \"postgres://u@127.0.0.1:1/s\"\n[destination]\nurl = \"postgres://u@127.0.0.1:2/d\"\n",
    );
    for (stem, krate, settings) in plugins {
        std::fs::copy(wasm(krate), dir.path().join(format!("{stem}.wasm"))).unwrap();
        text.push_str(&format!("[plugins.{stem}]\n{settings}\n"));
    }
    let config =
        Config::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (dir, config)
}

/// Stages a run of the binary: `<name>.toml` (the pair's config with `source_extra` under
/// `[source]`, then `[plugins.<stem>]` with each plugin's settings) and, when there are
/// plugins, a plugin directory with their components (`(file stem, crate, settings)`).
/// Returns the `pgmorph run` arguments and the log path.
pub fn binary_run(
    pair: &Pair,
    name: &str,
    source_extra: &str,
    plugins: &[(&str, &str, &str)],
) -> anyhow::Result<(Vec<String>, PathBuf)> {
    let dir = pair.dir.path();
    let mut text = pair.config_text(name, "", source_extra);
    let config = dir.join(format!("{name}.toml"));
    let mut args = vec!["run".to_string(), "--config".into(), path_arg(&config)];
    if !plugins.is_empty() {
        let plugin_dir = dir.join(format!("{name}-plugins"));
        std::fs::create_dir(&plugin_dir)?;
        for (stem, krate, settings) in plugins {
            std::fs::copy(wasm(krate), plugin_dir.join(format!("{stem}.wasm")))?;
            text.push_str(&format!("[plugins.{stem}]\n{settings}\n"));
        }
        args.extend(["--plugins".into(), path_arg(&plugin_dir)]);
    }
    std::fs::write(&config, text)?;
    Ok((args, dir.join(format!("{name}.log"))))
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}

fn col(name: &str, type_sql: &str, is_key: bool) -> Column {
    Column {
        name: name.into(),
        type_oid: 0,
        type_modifier: -1,
        type_sql: type_sql.into(),
        not_null: is_key,
        is_key,
    }
}

/// `public.<name>`: id bigint key, cust_id integer, email text, amount numeric(12,2),
/// status text, created timestamptz, meta json.
pub fn orders(oid: u32, name: &str) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        oid,
        name: TableName::new("public", name),
        columns: vec![
            col("id", "bigint", true),
            col("cust_id", "integer", false),
            col("email", "text", false),
            col("amount", "numeric(12,2)", false),
            col("status", "text", false),
            col("created", "timestamp with time zone", false),
            col("meta", "json", false),
        ],
        identity: ReplicaIdentity::Default,
        has_primary_key: true,
    })
}

/// An orders row in source layout.
pub fn order(id: i64, status: &str) -> Row {
    vec![
        Cell::text(id.to_string()),
        Cell::text("7"),
        Cell::text(format!("user{id}@example.com")),
        Cell::text("12.50"),
        Cell::text(status),
        Cell::text("2024-01-02 03:04:05.123+00"),
        Cell::text("{\"a\": 1}"),
    ]
}

/// An insert.
pub fn insert(row: Row) -> RowChange {
    RowChange {
        op: Op::Insert,
        old: None,
        new: Some(row),
    }
}

/// The text of a cell.
pub fn text(cell: &Cell) -> Option<&str> {
    cell.as_text().map(|t| std::str::from_utf8(t).unwrap())
}
