//! `pgmorph plugin check|run|new|cache prune` and `pgmorph schemasync`: looking at plugins and
//! mappings without moving data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use pgmorph::config::{Config, OnError, PluginSettings};
use pgmorph::model::TableName;
use pgmorph::pipeline::preview;
use pgmorph::plugin as offline;

use super::plugin_new::{Lang, NewPlugin};

/// `pgmorph plugin ...`.
#[derive(Subcommand)]
pub enum PluginAction {
    /// Validate a component against the plugin world, list its imports and exports, then
    /// instantiate it and run its `init` under the memory cap and deadline.
    Check {
        /// The `.wasm` component.
        path: PathBuf,
        /// The plugin's config, handed to `init`: JSON, or a file holding JSON (or TOML when
        /// it ends in `.toml`: what `[plugins.<stem>.config]` would hold).
        #[arg(long, value_name = "FILE_OR_JSON")]
        plugin_config: Option<String>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Run a plugin offline on sample rows (JSON lines) and print what it does to each; the
    /// timing of the calls goes to stderr.
    #[command(after_help = ROWS_HELP)]
    Run {
        /// The `.wasm` component.
        path: PathBuf,
        /// The table the rows belong to, `schema.table`.
        #[arg(long)]
        table: String,
        /// The rows file: JSON lines, see below.
        #[arg(long)]
        rows: PathBuf,
        /// The plugin's config: JSON, or a file holding JSON (or TOML when it ends in
        /// `.toml`: what `[plugins.<stem>.config]` would hold).
        #[arg(long, value_name = "FILE_OR_JSON")]
        plugin_config: Option<String>,
        #[command(flatten)]
        limits: Limits,
        /// What a plugin fault does to a row, as `on_error` in the config: `dead_letter`
        /// prints the row with its error, `skip` skips it, `stop` ends the run.
        #[arg(long, default_value = "dead_letter", value_parser = ["stop", "skip", "dead_letter"])]
        on_error: String,
    },
    /// Create a plugin that builds, passes `plugin check` and has unit tests, to start from.
    #[command(after_help = NEW_HELP)]
    New {
        /// The plugin's name: its crate name and file stem (`[a-z][a-z0-9_-]*`).
        name: String,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The directory to create it in (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK folder of a pgmorph checkout (`plugin-sdk`, `sdk-python` or `sdk-js`);
        /// default: the one in the source tree this pgmorph was built from.
        #[arg(long, conflicts_with = "sdk_git")]
        sdk_path: Option<PathBuf>,
        /// Rust only: depend on the SDK from this git repository instead of a local path.
        #[arg(long)]
        sdk_git: Option<String>,
    },
    /// The cache of compiled components (`$PGMORPH_CACHE_DIR`, else `$XDG_CACHE_HOME/pgmorph`,
    /// else `~/.cache/pgmorph`).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

/// `pgmorph plugin cache ...`.
#[derive(Subcommand)]
pub enum CacheAction {
    /// Remove the least recently used compiled components beyond the caps now (pgmorph also
    /// does it whenever it loads a plugin), and print what was removed.
    Prune {
        /// Remove every compiled component.
        #[arg(long, conflicts_with_all = ["max_entries", "max_mb"])]
        all: bool,
        /// Most compiled components kept.
        #[arg(long, default_value_t = pgmorph::plugin::CACHE_MAX_ENTRIES)]
        max_entries: usize,
        /// Most MiB of compiled components kept.
        #[arg(long, default_value_t = pgmorph::plugin::CACHE_MAX_BYTES >> 20)]
        max_mb: u64,
    },
}

/// The sandbox limits, as `memory_mb` and `timeout_ms` in the config.
#[derive(clap::Args)]
pub struct Limits {
    /// The plugin's memory cap in MiB.
    #[arg(long, default_value_t = pgmorph::plugin::DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// The CPU deadline of one call (`init` included) in milliseconds.
    #[arg(long, default_value_t = pgmorph::plugin::DEFAULT_TIMEOUT_MS)]
    timeout_ms: u64,
}

const ROWS_HELP: &str = r#"The rows file (JSON lines):
  {"columns": [{"name": "id", "type": "bigint", "key": true}, {"name": "email", "type": "text"}]}
  {"id": 1, "email": "a@example.com"}                        a snapshot row
  {"op": "insert", "new": {"id": 2, "email": "b@example.com"}}
  {"op": "update", "old": {"id": 2}, "new": {"id": 2, "email": "c@example.com"}}
  {"op": "delete", "old": {"id": 2}}
The first line must state the table's columns in order ("type": SQL type, default text; "key";
"not_null"); a file without it is refused. Each other line is a change by source column name.
Values are PostgreSQL text forms (JSON numbers and booleans are converted)."#;

const NEW_HELP: &str = "Rust: a crate with a `path` dependency on the SDK (or `git` with \
--sdk-git); `cargo test`, then `cargo build --release --target wasm32-wasip2`. Python and \
JavaScript: `./test.sh`, then `./build.sh`, using the SDK folder (PGMORPH_SDK_PYTHON or \
PGMORPH_SDK_JS override it). Each holds a README with the next commands and a sample rows \
file for `plugin run`.";

/// Settings from the command line: config JSON, limits and fault policy.
fn settings(
    plugin_config: Option<String>,
    limits: &Limits,
    on_error: OnError,
) -> anyhow::Result<PluginSettings> {
    Ok(PluginSettings {
        config: plugin_config
            .as_deref()
            .map(plugin_config_value)
            .transpose()?,
        memory_mb: Some(limits.memory_mb),
        timeout_ms: Some(limits.timeout_ms),
        on_error,
        ..PluginSettings::default()
    })
}

/// `--plugin-config`: JSON text, else the file it names (TOML when it ends in `.toml`).
fn plugin_config_value(arg: &str) -> anyhow::Result<toml::Value> {
    if let Ok(value) = serde_json::from_str::<toml::Value>(arg) {
        return Ok(value);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--plugin-config {arg:?} is neither JSON nor a readable file"))?;
    if path.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("--plugin-config {}: not TOML", path.display()))?;
        return Ok(toml::Value::Table(table));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("--plugin-config {}: not JSON", path.display()))
}

/// Runs a plugin subcommand.
pub fn run(action: PluginAction) -> anyhow::Result<()> {
    match action {
        PluginAction::Check {
            path,
            plugin_config,
            limits,
        } => {
            let report = offline::check(&path)?;
            print!("{report}");
            let settings = settings(plugin_config, &limits, OnError::Stop)?;
            let init_ms = offline::check_init(&path, &settings)?;
            println!("init: ok in {init_ms} ms");
            Ok(())
        }
        PluginAction::Run {
            path,
            table,
            rows,
            plugin_config,
            limits,
            on_error,
        } => {
            let text = std::fs::read_to_string(&rows)
                .with_context(|| format!("reading {}", rows.display()))?;
            let name = TableName::parse(&table, "public");
            let rows_table = offline::read_rows_table(&name, &text)
                .with_context(|| format!("reading {}", rows.display()))?;
            let on_error = match on_error.as_str() {
                "stop" => OnError::Stop,
                "skip" => OnError::Skip,
                _ => OnError::DeadLetter,
            };
            let settings = settings(plugin_config, &limits, on_error)?;
            let result = offline::run_offline(&path, &settings, &rows_table.schema, &text)?;
            println!("{}", offline::describe_mapping(&result.mapping));
            for r in &result.results {
                println!("{r}");
            }
            eprintln!("{}", timing(&result));
            Ok(())
        }
        PluginAction::New {
            name,
            lang,
            dir,
            sdk_path,
            sdk_git,
        } => new_plugin(NewPlugin {
            dir: dir.unwrap_or_else(|| PathBuf::from(&name)),
            name,
            lang,
            sdk_path,
            sdk_git,
        }),
        PluginAction::Cache {
            action:
                CacheAction::Prune {
                    all,
                    max_entries,
                    max_mb,
                },
        } => prune_cache(all, max_entries, max_mb),
    }
}

/// `pgmorph plugin new`: writes the plugin and prints its files and the next commands.
fn new_plugin(new: NewPlugin) -> anyhow::Result<()> {
    let files = super::plugin_new::scaffold(&new)?;
    println!(
        "created {} plugin {} in {}:",
        lang_name(new.lang),
        new.name,
        new.dir.display()
    );
    for f in &files {
        println!("  {}", f.display());
    }
    let next = match new.lang {
        Lang::Rust => "cargo test && cargo build --release --target wasm32-wasip2",
        Lang::Python | Lang::Js => "./test.sh && ./build.sh",
    };
    println!("next: cd {} && {next} (see README.md)", new.dir.display());
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// `pgmorph plugin cache prune`: prints `removed N entries (B bytes) from DIR; kept ...`.
fn prune_cache(all: bool, max_entries: usize, max_mb: u64) -> anyhow::Result<()> {
    let dir = offline::default_cache_dir()
        .context("no cache directory: set PGMORPH_CACHE_DIR, XDG_CACHE_HOME or HOME")?;
    let caps = if all {
        offline::CacheCaps {
            max_entries: 0,
            max_bytes: 0,
        }
    } else {
        offline::CacheCaps {
            max_entries,
            max_bytes: max_mb.saturating_mul(1 << 20),
        }
    };
    let pruned = offline::prune_cache(&dir, caps)
        .with_context(|| format!("pruning the plugin cache {}", dir.display()))?;
    println!(
        "removed {} entries ({} bytes) from {}; kept {} entries ({} bytes)",
        pruned.removed_entries,
        pruned.removed_bytes,
        dir.display(),
        pruned.kept_entries,
        pruned.kept_bytes
    );
    Ok(())
}

/// `timing: N calls, total X ms, mean Y ms per call (start Z ms)`.
fn timing(run: &offline::OfflineRun) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let mean = match run.calls {
        0 => 0.0,
        n => ms(run.call_time) / n as f64,
    };
    format!(
        "timing: {} calls, total {:.3} ms, mean {mean:.3} ms per call (load, init and mapping {:.3} ms)",
        run.calls,
        ms(run.call_time),
        ms(run.start_time)
    )
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
