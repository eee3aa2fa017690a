//! `pgmorph plugin check|run` and `pgmorph schemasync`: looking at plugins and mappings
//! without moving data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use pgmorph::config::{Config, PluginSettings};
use pgmorph::model::TableName;
use pgmorph::pipeline::preview;
use pgmorph::plugin as offline;

/// `pgmorph plugin ...`.
#[derive(Subcommand)]
pub enum PluginAction {
    /// Validate a component against the plugin world and list its imports and exports.
    Check {
        /// The `.wasm` component.
        path: PathBuf,
    },
    /// Run a plugin offline on sample rows (JSON lines) and print what it does to each.
    Run {
        /// The `.wasm` component.
        path: PathBuf,
        /// The table the rows belong to, `schema.table`.
        #[arg(long)]
        table: String,
        /// JSON lines: one row object per line (by source column name), or
        /// `{"op": "update", "old": {...}, "new": {...}}`.
        #[arg(long)]
        rows: PathBuf,
        /// The plugin's config as JSON (what `[plugins.<stem>.config]` would hold).
        #[arg(long)]
        plugin_config: Option<String>,
    },
}

/// Runs a plugin subcommand.
pub fn run(action: PluginAction) -> anyhow::Result<()> {
    match action {
        PluginAction::Check { path } => {
            let report = offline::check(&path)?;
            print!("{report}");
            Ok(())
        }
        PluginAction::Run {
            path,
            table,
            rows,
            plugin_config,
        } => {
            let text = std::fs::read_to_string(&rows)
                .with_context(|| format!("reading {}", rows.display()))?;
            let name = TableName::parse(&table, "public");
            let schema = offline::schema_from_jsonl(&name, &text)?;
            let settings = PluginSettings {
                config: plugin_config
                    .map(|c| serde_json::from_str::<toml::Value>(&c))
                    .transpose()
                    .context("--plugin-config must be JSON")?,
                ..PluginSettings::default()
            };
            let result = offline::run_offline(&path, &settings, &schema, &text)?;
            println!("{}", offline::describe_mapping(&result.mapping));
            for r in result.results {
                println!("{r}");
            }
            Ok(())
        }
    }
}

/// `pgmorph schemasync --dry-run`: prints the mapping of every selected table.
pub async fn dry_run(config: &Config, plugins: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let mut transform = super::transform_setup::build(config, plugins)?;
    let tables = preview::preview(config, transform.as_mut()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tables)?);
    } else {
        for t in &tables {
            println!("{t}");
        }
    }
    Ok(())
}
