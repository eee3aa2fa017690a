//! Hot reload of the plugin chain. A watcher (notify, debounced) and SIGHUP trigger a rebuild
//! off the replication path: the config file is read again, every plugin is compiled,
//! instantiated and initialised, and every replicated table is mapped. Only a chain that passed
//! all of that reaches the CDC loop, which swaps it in between transactions; a broken version
//! never replaces the working one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::model::TableSchema;
use crate::plugin::PluginChain;
use crate::state::StateStore;
use crate::transform::{Identity, Transform};

/// Events closer together than this are one change (a file written in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// A plugin chain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A plugin failed to load, instantiate or initialise.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// A plugin failed to map a replicated table.
    #[error("mapping table {table}: {message}")]
    Mapping {
        /// Source table.
        table: String,
        /// The error.
        message: String,
    },
    /// `[plugins.*]` settings without a plugin directory.
    #[error(
        "[plugins.{0}] is configured but no plugin directory is set (plugin_dir or --plugins)"
    )]
    NoDirectory(String),
}

/// Name and content hash of each plugin file, plus the hash of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// `(file stem, sha-256 of the .wasm, first 12 hex digits)` in chain order.
    pub plugins: Vec<(String, String)>,
    /// Hash of the config file's text.
    pub config: String,
}

impl Fingerprint {
    /// Reads the plugin directory and the config file.
    pub fn read(dir: Option<&Path>, config_path: Option<&Path>) -> Self {
        let mut plugins = Vec::new();
        if let Some(dir) = dir {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
                    if let (Some(stem), Ok(bytes)) = (stem, std::fs::read(&f)) {
                        plugins.push((stem, short_hash(&bytes)));
                    }
                }
            }
        }
        let config = config_path
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| short_hash(&b))
            .unwrap_or_default();
        Self { plugins, config }
    }
}

impl Fingerprint {
    /// Reads the plugin directory `config` uses (see [`plugin_dir`]) and the config file.
    pub fn of_config(
        config: &Config,
        dir_override: Option<&Path>,
        config_path: Option<&Path>,
    ) -> Self {
        Self::read(plugin_dir(config, dir_override), config_path)
    }
}

/// The plugin directory of a run: `--plugins` when given, else the config's `plugin_dir`.
pub fn plugin_dir<'a>(config: &'a Config, dir_override: Option<&'a Path>) -> Option<&'a Path> {
    dir_override.or(config.plugin_dir.as_deref())
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Builds the transform a config asks for: the plugin chain of `dir_override` or
/// `plugin_dir`, or the identity when there is neither.
pub fn build_transform(
    config: &Config,
    dir_override: Option<&Path>,
) -> Result<Box<dyn Transform>, ReloadError> {
    match plugin_dir(config, dir_override) {
        None => match config.plugins.keys().next() {
            Some(stem) => Err(ReloadError::NoDirectory(stem.clone())),
            None => Ok(Box::new(Identity)),
        },
        Some(dir) => Ok(Box::new(PluginChain::load(dir, &config.plugins)?)),
    }
}

/// A validated chain, ready to be swapped in.
pub struct Prepared {
    /// The new transform.
    pub transform: Box<dyn Transform>,
    /// What it was built from.
    pub fingerprint: Fingerprint,
    /// The config it was built from.
    pub config: Config,
    /// The config changed what is replicated (tables, servers, destination schema): the
    /// connector restarts in-process with it, copying only the tables that are new.
    pub restart: bool,
}

/// Whether two configs replicate different things.
fn selection_changed(a: &Config, b: &Config) -> bool {
    a.source.url != b.source.url
        || a.source.schema != b.source.schema
        || a.source.tables != b.source.tables
        || a.destination.url != b.destination.url
        || a.destination.schema != b.destination.schema
}

/// What the reload task needs.
pub struct ReloadSetup {
    /// The config file to re-read (`None`: config given in memory, only plugins reload).
    pub config_path: Option<PathBuf>,
    /// The config as first loaded.
    pub config: Config,
    /// `--plugins`, overriding `plugin_dir`.
    pub dir_override: Option<PathBuf>,
    /// Watch files (false: SIGHUP only).
    pub watch: bool,
    /// The replicated tables, mapped by every candidate chain to validate it.
    pub tables: Vec<Arc<TableSchema>>,
    /// The destination schema.
    pub dest_schema: String,
    /// Where reload results are recorded.
    pub state: Arc<StateStore>,
    /// What the running chain was built from.
    pub current: Fingerprint,
}

/// Starts watching; validated chains arrive on the returned channel.
///
/// The file watcher is registered before this returns, and the files are compared once with
/// `setup.current` right after, so a change made at any time after `current` was read (for
/// example while the snapshot ran) is picked up. Watching stops when the receiver is dropped.
pub fn spawn(setup: ReloadSetup) -> Result<mpsc::Receiver<Prepared>, notify::Error> {
    let (tx, rx) = mpsc::channel(1);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<()>();
    let watcher = if setup.watch {
        Some(watch_files(&setup, ev_tx.clone())?)
    } else {
        None
    };
    // The first check: anything changed since `current` was read.
    let _ = ev_tx.send(());
    spawn_sighup_listener(ev_tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        tokio::select! {
            _ = watch_loop(setup, ev_rx, &tx) => {}
            _ = tx.closed() => {}
        }
    });
    Ok(rx)
}

/// The plugin directory and the config file's directory, reported on `events`.
fn watch_files(
    setup: &ReloadSetup,
    events: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let relevant = ev
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "wasm" || e == "toml"));
            if relevant && !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = events.send(());
            }
        }
    })?;
    if let Some(dir) = plugin_dir(&setup.config, setup.dir_override.as_deref()) {
        w.watch(dir, RecursiveMode::NonRecursive)?;
    }
    if let Some(parent) = setup.config_path.as_deref().and_then(Path::parent) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        w.watch(parent, RecursiveMode::NonRecursive)?;
    }
    Ok(w)
}

fn spawn_sighup_listener(events: mpsc::UnboundedSender<()>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        // Ends with the watch loop (its receiver dropped), or when signals stop.
        loop {
            tokio::select! {
                _ = events.closed() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading plugins and config");
                    let _ = events.send(());
                }
            }
        }
    });
}

async fn watch_loop(
    setup: ReloadSetup,
    mut ev_rx: mpsc::UnboundedReceiver<()>,
    out: &mpsc::Sender<Prepared>,
) {
    let mut current = setup.current.clone();
    while ev_rx.recv().await.is_some() {
        // Debounce: wait until the files have been quiet for a while.
        loop {
            match tokio::time::timeout(DEBOUNCE, ev_rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let config_path = setup.config_path.clone();
        let fresh_config = match &config_path {
            Some(p) => Config::load(p).map_err(ReloadError::from),
            None => Ok(setup.config.clone()),
        };
        let fingerprint = match &fresh_config {
            Ok(c) => {
                Fingerprint::of_config(c, setup.dir_override.as_deref(), config_path.as_deref())
            }
            Err(_) => Fingerprint::read(setup.dir_override.as_deref(), config_path.as_deref()),
        };
        if fingerprint == current {
            continue;
        }
        let started = std::time::Instant::now();
        let tables = setup.tables.clone();
        let dest_schema = setup.dest_schema.clone();
        let dir_override = setup.dir_override.clone();
        let built = tokio::task::spawn_blocking(
            move || -> Result<(Box<dyn Transform>, Config), ReloadError> {
                let config = fresh_config?;
                let mut transform = build_transform(&config, dir_override.as_deref())?;
                for t in tables {
                    transform.map_table(t.clone(), &dest_schema).map_err(|e| {
                        ReloadError::Mapping {
                            table: t.name.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                }
                Ok((transform, config))
            },
        )
        .await;
        let built = match built {
            Ok(r) => r,
            Err(join) => {
                tracing::error!(error = %join, "plugin reload task failed");
                continue;
            }
        };
        match built {
            Ok((transform, config)) => {
                crate::metrics::plugin_reload(true);
                let restart = selection_changed(&setup.config, &config);
                tracing::info!(
                    old = ?current.plugins,
                    new = ?fingerprint.plugins,
                    ms = started.elapsed().as_millis() as u64,
                    "new plugin chain validated; swapping it in at the next transaction boundary"
                );
                current = fingerprint.clone();
                let prepared = Prepared {
                    transform,
                    fingerprint,
                    config,
                    restart,
                };
                if out.send(prepared).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                crate::metrics::plugin_reload(false);
                let text = crate::error_chain::one_line(&e);
                tracing::error!(
                    plugins = ?fingerprint.plugins,
                    error = %text,
                    "plugin reload rejected; the running chain stays"
                );
                let failed = failed_plugin(&e, &fingerprint);
                if let Err(e) = setup.state.record_failed_reload(&failed, &text).await {
                    tracing::warn!(error = %e, "recording the failed reload");
                }
                // Do not retry the same broken files until they change again.
                current = fingerprint;
            }
        }
    }
}

/// The plugin a failed reload is blamed on (its name and new hash), or the config file.
fn failed_plugin(e: &ReloadError, fp: &Fingerprint) -> (String, String) {
    let text = e.to_string();
    fp.plugins
        .iter()
        .find(|(name, _)| text.contains(name.as_str()))
        .cloned()
        .unwrap_or_else(|| ("(config)".to_string(), fp.config.clone()))
}

/// Per plugin, how it was loaded: used for the status rows.
pub fn loaded_plugins(fp: &Fingerprint) -> BTreeMap<String, String> {
    fp.plugins.iter().cloned().collect()
}
