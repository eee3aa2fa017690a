//! One connector's life: check the source, map the tables, snapshot if the mode asks for it,
//! then stream changes until shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use super::apply::{Cdc, CdcError, Stopped};
use super::relations::Relations;
use super::reload::{self, Fingerprint, ReloadSetup};
use super::snapshot::{self, SnapshotError, SnapshotJob};
use super::transform::{SharedTransform, Transform, TransformError};
use crate::config::{Config, ConnectionError, ConnectionSettings};
use crate::model::{Lsn, TableMapping};
use crate::sink::{ddl, Sink};
use crate::source::stream::{CreatedSlot, ReplicationStream, StreamError};
use crate::source::{catalog, setup};
use crate::state::{ConnectorState, StateError, StateStore};

/// How a start treats existing data (SynchDB's snapshot modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Mode {
    /// Snapshot once (schema and data), then stream; later starts resume streaming.
    #[default]
    Initial,
    /// Snapshot once, then stop without streaming.
    InitialOnly,
    /// Create the tables without copying rows, then stream.
    NoData,
    /// Rebuild the tables and redo the snapshot on every start, then stream.
    Always,
    /// Create the mapped tables without rows, then pause for review.
    Schemasync,
}

/// The connector could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Connection settings are unusable.
    #[error(transparent)]
    Settings(#[from] ConnectionError),
    /// A server could not be reached or refused the login.
    #[error("cannot connect to the {side} {who}: {message}")]
    Connect {
        /// `source` or `destination`.
        side: &'static str,
        /// `user@host:port/db`.
        who: String,
        /// The reason.
        message: String,
    },
    /// Server checks or publication/slot setup failed.
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    /// The catalog refused a table.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// A mapping failed.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// Two source tables map to one destination table.
    #[error(
        "source tables {a} and {b} would both land in destination table {dest}: map one elsewhere"
    )]
    Collision {
        /// First source table.
        a: String,
        /// Second source table.
        b: String,
        /// The shared destination.
        dest: String,
    },
    /// Creating destination tables failed.
    #[error(transparent)]
    Ddl(#[from] ddl::DdlError),
    /// The state tables failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The replication connection failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Streaming failed.
    #[error(transparent)]
    Cdc(#[from] CdcError),
    /// The slot is gone although the snapshot was done: changes may have been lost.
    #[error(
        "replication slot {0} is missing on the source although the snapshot was done: changes since \
         the last run cannot be recovered; run `pgmorph reset` and start again to redo the snapshot"
    )]
    SlotLost(String),
    /// A requested option is not available.
    #[error("{0}")]
    Unsupported(String),
}

/// Everything a run needs besides the config.
pub struct RunOptions {
    /// The start mode.
    pub mode: Mode,
    /// Becomes `true` to request a clean stop.
    pub shutdown: watch::Receiver<bool>,
    /// The transform (plugin chain or identity).
    pub transform: Box<dyn Transform>,
    /// Hot reload of plugins and config; `None` keeps the chain for the whole run.
    pub reload: Option<ReloadOptions>,
}

/// How plugins and config are reloaded while running.
#[derive(Debug, Clone, Default)]
pub struct ReloadOptions {
    /// The config file to re-read on a change.
    pub config_path: Option<std::path::PathBuf>,
    /// `--plugins`, overriding `plugin_dir`.
    pub dir_override: Option<std::path::PathBuf>,
    /// Watch the files (false: reload on SIGHUP only).
    pub watch: bool,
    /// What the transform in [`RunOptions`] was built from, read before it was built; `None`
    /// reads the files when streaming starts (a change made before that goes unnoticed).
    pub loaded: Option<Fingerprint>,
}

pub(crate) async fn connect(
    settings: &ConnectionSettings,
    app: &str,
) -> Result<tokio_postgres::Client, RunError> {
    settings.connect(app).await.map_err(|e| RunError::Connect {
        side: settings.side,
        who: settings.describe(),
        message: match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut m = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    m = format!("{m}: {s}");
                    src = s.source();
                }
                m
            }
        },
    })
}

/// Runs a connector until shutdown (Ok) or a fatal error, recording state in the destination.
pub async fn run(config: &Config, options: RunOptions) -> Result<(), RunError> {
    let mut config = config.clone();
    let mut options = options;
    loop {
        let source_settings = config.source_connection()?;
        let dest_settings = config.destination_connection()?;
        let dest_state = connect(&dest_settings, "pgmorph state").await?;
        let state = Arc::new(StateStore::open(dest_state, &config.name).await?);
        let shutdown = options.shutdown.clone();
        let reload = options.reload.clone();
        let result =
            run_with_state(&config, options, &source_settings, &dest_settings, &state).await;
        match result {
            Ok(Ended::Restart(prepared)) => {
                let reload::Prepared {
                    transform,
                    fingerprint,
                    config: next,
                    ..
                } = *prepared;
                config = next;
                options = RunOptions {
                    mode: Mode::Initial,
                    shutdown,
                    transform,
                    reload: reload.map(|r| ReloadOptions {
                        loaded: Some(fingerprint),
                        ..r
                    }),
                };
            }
            Ok(Ended::Final(final_state)) => {
                let stage = (final_state == "paused").then_some("schema sync");
                let _ = state.set(stage, final_state, None).await;
                return Ok(());
            }
            Err(e) => {
                let text = crate::error_chain::one_line(&e);
                tracing::error!(error = %text, "connector stopped with an error");
                let _ = state.set(None, "error", Some(&text)).await;
                return Err(e);
            }
        }
    }
}

/// How a run ended without error.
enum Ended {
    /// Stopped, paused (schema sync) or done (initial_only): the state to leave behind.
    Final(&'static str),
    /// The reloaded config selects other tables: start again with it.
    Restart(Box<super::reload::Prepared>),
}

/// A replication stream being opened while the rest of the start-up runs.
struct EarlyStream {
    from: Lsn,
    stream: tokio::task::JoinHandle<Result<ReplicationStream, StreamError>>,
}

impl EarlyStream {
    /// Closes the stream cleanly (the slot is released for the next open).
    async fn close(self) {
        if let Ok(Ok(stream)) = self.stream.await {
            stream.shutdown().await;
        }
    }
}

/// On a restart that only streams (the slot exists and every table is copied), starts opening
/// the replication stream at once: the server takes tens of milliseconds to start logical
/// decoding, which then overlaps with preparing the destination.
async fn open_early(
    state: &StateStore,
    settings: &ConnectionSettings,
    slot: &str,
    mode: Mode,
    previous: &ConnectorState,
    slot_exists: bool,
    active: &[Arc<TableMapping>],
) -> Result<Option<EarlyStream>, RunError> {
    if !slot_exists || !previous.snapshot_done || !matches!(mode, Mode::Initial | Mode::NoData) {
        return Ok(None);
    }
    let known = state.tables().await?;
    let all_copied = active.iter().all(|m| {
        known
            .get(&m.source.name.to_string())
            .is_some_and(|t| t.is_copied())
    });
    if !all_copied {
        return Ok(None);
    }
    let (settings, slot, from) = (settings.clone(), slot.to_string(), previous.last_lsn);
    Ok(Some(EarlyStream {
        from,
        stream: tokio::spawn(async move {
            ReplicationStream::open(&settings, &slot, &slot, from).await
        }),
    }))
}

/// Runs the connector; returns how it ended.
async fn run_with_state(
    config: &Config,
    options: RunOptions,
    source_settings: &ConnectionSettings,
    dest_settings: &ConnectionSettings,
    state: &Arc<StateStore>,
) -> Result<Ended, RunError> {
    let RunOptions {
        mode,
        mut shutdown,
        transform,
        reload,
    } = options;
    state.set(None, "initializing", Some("no error")).await?;
    let source = connect(source_settings, "pgmorph").await?;
    setup::check_server(&source).await?;

    let dest_schema = config
        .destination
        .schema
        .clone()
        .unwrap_or_else(|| source_settings.dbname.clone());
    let listed = config.listed_tables();
    let schema = config
        .source
        .schema
        .clone()
        .unwrap_or_else(|| "public".into());
    let oids = catalog::select_tables(&source, &schema, listed.as_deref()).await?;
    let selection = catalog::describe(&source, &oids, &dest_schema).await?;

    let transform: SharedTransform = Arc::new(Mutex::new(transform));
    let mut mappings = Vec::new();
    {
        let mut t = transform.lock().await;
        for table in &selection.tables {
            mappings.push(Arc::new(
                t.map_table(Arc::new(table.clone()), &dest_schema)?,
            ));
        }
    }
    check_collisions(&mappings)?;
    let previous_maps = super::align::previous_mappings(state, &mappings).await?;
    let active: Vec<Arc<TableMapping>> = mappings.iter().filter(|m| !m.skip).cloned().collect();
    let slot = config.slot_name();
    let published: Vec<_> = active.iter().map(|m| m.source.name.clone()).collect();
    if published.is_empty() {
        return Err(RunError::Unsupported(
            "every selected table is skipped by the plugins: nothing to replicate".into(),
        ));
    }
    setup::ensure_publication(&source, &slot, &published).await?;

    let previous = state.load().await?;
    let slot_info = setup::slot_info(&source, &slot).await?;
    if previous.snapshot_done
        && slot_info.is_none()
        && !matches!(mode, Mode::Always | Mode::InitialOnly)
    {
        return Err(RunError::SlotLost(slot));
    }

    let mut early_stream = open_early(
        state,
        source_settings,
        &slot,
        mode,
        &previous,
        slot_info.is_some(),
        &active,
    )
    .await?;
    let dest = connect(dest_settings, "pgmorph apply").await?;
    if config.destination.synchronous_commit_off {
        let _ = dest.batch_execute("SET synchronous_commit = off").await;
    }
    // Set-based updates join a few hundred keys to the table: an index lookup per key, never a
    // scan of the whole table.
    let _ = dest
        .batch_execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
        .await;
    let user_types: Vec<_> = selection.user_types.values().collect();
    ddl::ensure_schema_and_types(&dest, &dest_schema, &user_types).await?;
    let mut other_schemas: Vec<&str> = active
        .iter()
        .map(|m| m.destination.schema.as_str())
        .filter(|s| *s != dest_schema)
        .collect();
    other_schemas.sort();
    other_schemas.dedup();
    for schema in other_schemas {
        ddl::ensure_schema_and_types(&dest, schema, &[]).await?;
    }
    // Mappings edited while stopped: existing destination tables follow in place.
    let recopy = super::align::align(&dest, &previous_maps, &active).await?;
    state.record_mappings(&mappings).await?;
    if !recopy.is_empty() {
        state.plan_copies(&pairs_of(&recopy)).await?;
    }

    if mode == Mode::Schemasync {
        for m in &active {
            ddl::create_table(&dest, m, false).await?;
        }
        state.set(Some("schema sync"), "paused", None).await?;
        tracing::info!(
            tables = active.len(),
            "schema sync done: destination tables created, connector paused"
        );
        return Ok(Ended::Final("paused"));
    }
    let selected: Vec<String> = active.iter().map(|m| m.source.name.to_string()).collect();
    state.forget_tables_except(&selected).await?;

    // A first start (or a start after the slot was dropped) creates the main slot; its
    // exported snapshot serves the copy of every table.
    let mut fresh = None;
    if slot_info.is_none() {
        state
            .set(Some("initial snapshot"), "initializing", None)
            .await?;
        let created =
            ReplicationStream::create_slot_with_snapshot(source_settings, &slot, &slot, false)
                .await?;
        tracing::info!(slot, consistent_point = %created.consistent_point, "replication slot created");
        state
            .start_initial(&dest_schema, created.consistent_point)
            .await?;
        fresh = Some(created);
    }

    // Tables to copy now: never copied (new, or interrupted), or re-copied by mode `always`.
    let known = state.tables().await?;
    let only = config.snapshot_tables();
    let to_copy: Vec<Arc<TableMapping>> = active
        .iter()
        .filter(|m| {
            let copied = known
                .get(&m.source.name.to_string())
                .is_some_and(|t| t.is_copied());
            let requested = mode == Mode::Always
                && only
                    .as_ref()
                    .is_none_or(|list| list.contains(&m.source.name));
            !copied || requested
        })
        .cloned()
        .collect();
    for m in &active {
        let rebuild = mode == Mode::Always && to_copy.iter().any(|c| Arc::ptr_eq(c, m));
        ddl::create_table(&dest, m, rebuild).await?;
    }
    let copier = Copier {
        config,
        source: source_settings,
        destination: dest_settings,
        state,
        transform: &transform,
        slot: &slot,
        resume: mode != Mode::Always,
    };
    if mode == Mode::NoData {
        state.mark_streaming(&pairs_of(&to_copy)).await?;
        state.finish_snapshot(0).await?;
    } else if !to_copy.is_empty() {
        copier.copy(&to_copy, fresh.as_ref()).await?;
    } else if !previous.snapshot_done {
        state.finish_snapshot(0).await?;
    }

    if mode == Mode::InitialOnly {
        state.set(Some("initial snapshot"), "done", None).await?;
        tracing::info!("initial_only: snapshot done, not streaming");
        return Ok(Ended::Final("done"));
    }

    let (mut stream, durable) = match fresh {
        Some(created) => {
            let mut stream = created.stream;
            stream.start().await?;
            (stream, created.consistent_point)
        }
        None => {
            let last = state.load().await?.last_lsn;
            let stream = match early_stream.take() {
                Some(early) if early.from == last => early.stream.await.map_err(|e| {
                    RunError::Unsupported(format!("opening the replication stream: {e}"))
                })??,
                other => {
                    if let Some(early) = other {
                        early.close().await;
                    }
                    ReplicationStream::open(source_settings, &slot, &slot, last).await?
                }
            };
            (stream, last)
        }
    };

    let watchdog = tokio::spawn(watch_retained_wal(
        source_settings.clone(),
        slot.clone(),
        config.source.max_retained_wal_mb,
    ));
    let mut relations = Relations::new(&dest_schema);
    for m in &mappings {
        relations.insert(m.clone());
    }
    let reloads = match reload {
        Some(r) => {
            let current = r.loaded.clone().unwrap_or_else(|| {
                Fingerprint::of_config(config, r.dir_override.as_deref(), r.config_path.as_deref())
            });
            state
                .record_plugins(&reload::loaded_plugins(&current), false)
                .await?;
            let setup = ReloadSetup {
                config_path: r.config_path,
                config: config.clone(),
                dir_override: r.dir_override,
                watch: r.watch,
                tables: mappings.iter().map(|m| m.source.clone()).collect(),
                dest_schema: dest_schema.clone(),
                state: state.clone(),
                current,
            };
            Some(reload::spawn(setup).map_err(|e| {
                RunError::Unsupported(format!(
                    "watching the plugin directory and config file: {e}"
                ))
            })?)
        }
        None => None,
    };
    let mut sink = Sink::new(dest, &config.name);
    sink.reorder_tables = ddl::free_of_foreign_keys_and_triggers(sink.client(), &active).await?;
    tracing::info!(
        grouped_per_table = sink.reorder_tables,
        "changes inside a destination transaction are grouped per table when the destination \
         tables have no foreign keys or triggers"
    );
    // Only now, with the reload watcher registered, is the connector reported as streaming.
    state
        .set(Some("change data capture"), "polling", None)
        .await?;
    tracing::info!(slot, from = %durable, "streaming changes");
    let mut cdc = Cdc {
        stream: &mut stream,
        sink: &mut sink,
        relations: &mut relations,
        transform: transform.clone(),
        source: &source,
        durable,
        sync: sync_points(state, &active).await?,
        shutdown: shutdown.clone(),
        state: state.clone(),
        reloads,
        restart_with: None,
    };
    let mut restart = None;
    let outcome: Result<(), RunError> = loop {
        match cdc.run().await {
            Ok(Stopped::Shutdown) => break Ok(()),
            Ok(Stopped::Restart) => {
                restart = cdc.restart_with.take();
                break Ok(());
            }
            Ok(Stopped::Resync) => {
                // Between transactions: copy the tables marked pending, then go on streaming.
                let resynced = async {
                    let known = state.tables().await?;
                    let pending: Vec<Arc<TableMapping>> = cdc
                        .relations
                        .all()
                        .filter(|m| {
                            !m.skip
                                && known
                                    .get(&m.source.name.to_string())
                                    .is_some_and(|t| t.phase == "pending")
                        })
                        .cloned()
                        .collect();
                    for m in &pending {
                        ddl::create_table(cdc.sink.client(), m, false).await?;
                    }
                    if !pending.is_empty() {
                        tracing::info!(tables = pending.len(), "re-syncing tables");
                        copier.copy(&pending, None).await?;
                    }
                    state
                        .set(Some("change data capture"), "polling", None)
                        .await?;
                    let current: Vec<Arc<TableMapping>> = cdc.relations.all().cloned().collect();
                    sync_points(state, &current).await
                }
                .await;
                match resynced {
                    Ok(sync) => cdc.sync = sync,
                    Err(e) => break Err(e),
                }
            }
            Err(e) => break Err(e.into()),
        }
    };
    drop(cdc);
    watchdog.abort();
    let _ = shutdown.borrow_and_update();
    stream.shutdown().await;
    outcome?;
    if let Some(prepared) = restart {
        return Ok(Ended::Restart(Box::new(prepared)));
    }
    tracing::info!("stopped cleanly");
    Ok(Ended::Final("stopped"))
}

/// Warns every 30 seconds while the slot keeps more WAL on the source than `limit_mb`.
async fn watch_retained_wal(settings: ConnectionSettings, slot: String, limit_mb: u64) {
    let Ok(client) = settings.connect("pgmorph watchdog").await else {
        return;
    };
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        let row = client
            .query_opt(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        if let Ok(Some(row)) = row {
            let retained: Option<i64> = row.get(0);
            let mb = retained.unwrap_or(0) as u64 >> 20;
            if mb > limit_mb {
                tracing::warn!(
                    slot,
                    retained_mb = mb,
                    limit_mb,
                    "the replication slot retains more WAL than max_retained_wal_mb on the source"
                );
            }
        }
    }
}

fn pairs_of(tables: &[Arc<TableMapping>]) -> Vec<(String, String)> {
    tables
        .iter()
        .map(|m| (m.source.name.to_string(), m.destination.to_string()))
        .collect()
}

/// Per relation, the position before which a table's changes are already in its copy.
async fn sync_points(
    state: &StateStore,
    active: &[Arc<TableMapping>],
) -> Result<HashMap<u32, Lsn>, RunError> {
    let known = state.tables().await?;
    Ok(active
        .iter()
        .filter_map(|m| {
            let lsn = known.get(&m.source.name.to_string())?.sync_lsn?;
            Some((m.source.oid, lsn))
        })
        .collect())
}

/// Copies tables under an exported snapshot: the main slot's on a first start, else a
/// temporary slot's, whose consistent point becomes the tables' sync point.
struct Copier<'a> {
    config: &'a Config,
    source: &'a ConnectionSettings,
    destination: &'a ConnectionSettings,
    state: &'a Arc<StateStore>,
    transform: &'a SharedTransform,
    slot: &'a str,
    /// Interrupted copies of split tables resume by page range (not with mode `always`).
    resume: bool,
}

impl Copier<'_> {
    async fn copy(
        &self,
        tables: &[Arc<TableMapping>],
        fresh: Option<&CreatedSlot>,
    ) -> Result<u64, RunError> {
        self.state
            .set(Some("initial snapshot"), "copying", None)
            .await?;
        let temporary = match fresh {
            Some(_) => None,
            None => Some(
                ReplicationStream::create_slot_with_snapshot(
                    self.source,
                    &format!("{}_sync", self.slot),
                    self.slot,
                    true,
                )
                .await?,
            ),
        };
        let exported = fresh.or(temporary.as_ref()).expect("one slot");
        tracing::info!(tables = tables.len(), sync_point = %exported.consistent_point, "copying tables");
        let resume = match self.resume {
            true => self.resumable(tables).await?,
            false => snapshot::Resume::new(),
        };
        let fresh: Vec<String> = tables
            .iter()
            .map(|m| m.source.name.to_string())
            .filter(|name| !resume.contains_key(name))
            .collect();
        self.state.forget_ranges(&fresh).await?;
        self.state.plan_copies(&pairs_of(tables)).await?;
        let rows = snapshot::copy_all(SnapshotJob {
            source: self.source.clone(),
            destination: self.destination.clone(),
            snapshot_name: exported.snapshot_name.clone(),
            tables: tables.to_vec(),
            parallel: self.config.snapshot.parallel,
            ranges: self.config.snapshot.range_policy(),
            indexes: self.config.snapshot.indexes,
            transform: self.transform.clone(),
            state: self.state.clone(),
            async_commit: self.config.destination.synchronous_commit_off,
            sync_lsn: exported.consistent_point,
            resume,
        })
        .await?;
        // Closing the idle connection drops the temporary slot.
        drop(temporary);
        self.state.finish_snapshot(rows as i64).await?;
        tracing::info!(rows, "snapshot finished");
        Ok(rows)
    }

    /// The tables among `tables` whose interrupted copy resumes by page range: page ranges
    /// were recorded as copied (they are forgotten when a copy completes), and rows can be
    /// merged by key on the destination.
    async fn resumable(&self, tables: &[Arc<TableMapping>]) -> Result<snapshot::Resume, RunError> {
        let mut done = self.state.copied_ranges().await?;
        let mut out = snapshot::Resume::new();
        for m in tables {
            let name = m.source.name.to_string();
            let Some(ranges) = done.remove(&name) else {
                continue;
            };
            let keys: Vec<String> = m
                .columns
                .iter()
                .filter(|c| c.is_key)
                .map(|c| c.name.clone())
                .collect();
            let unique = crate::sink::indexes::has_unique_key(
                self.state.client(),
                &m.destination.quoted(),
                &keys,
            )
            .await
            .map_err(StateError::from)?;
            let file: Option<u32> = self
                .state
                .client()
                .query_one(
                    "SELECT pg_relation_filenode(to_regclass($1))",
                    &[&m.destination.quoted()],
                )
                .await
                .map_err(StateError::from)?
                .get(0);
            let layout = snapshot::layout(m);
            if !ranges
                .iter()
                .all(|r| r.layout == layout && r.dest_file == file)
            {
                tracing::info!(table = %name, "the table's destination changed since its copy was interrupted (columns, or the table was emptied, dropped or rewritten): copying it again whole");
            } else if snapshot::resumable(m) && unique {
                out.insert(name, ranges);
            } else {
                tracing::info!(table = %name, "an interrupted copy cannot resume by page range (plugins change its rows, or it has no primary key on both sides): copying it again whole");
            }
        }
        Ok(out)
    }
}

fn check_collisions(mappings: &[Arc<TableMapping>]) -> Result<(), RunError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for m in mappings.iter().filter(|m| !m.skip) {
        let dest = m.destination.to_string();
        let src = m.source.name.to_string();
        if let Some(other) = seen.insert(dest.clone(), src.clone()) {
            return Err(RunError::Collision {
                a: other,
                b: src,
                dest,
            });
        }
    }
    Ok(())
}
