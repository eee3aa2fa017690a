//! One connector's life: check the source, map the tables, snapshot if the mode asks for it,
//! then stream changes until shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use super::apply::{Cdc, CdcError};
use super::relations::Relations;
use super::snapshot::{self, SnapshotError, SnapshotJob};
use super::transform::{Transform, TransformError};
use crate::config::{Config, ConnectionError, ConnectionSettings};
use crate::model::{Lsn, TableMapping};
use crate::sink::{ddl, Sink};
use crate::source::{catalog, setup, stream::ReplicationStream, stream::StreamError};
use crate::state::{StateError, StateStore};

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
}

async fn connect(
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
    let source_settings = config.source_connection()?;
    let dest_settings = config.destination_connection()?;
    let dest_state = connect(&dest_settings, "pgmorph state").await?;
    let state = Arc::new(StateStore::open(dest_state, &config.name).await?);
    let result = run_with_state(config, options, &source_settings, &dest_settings, &state).await;
    match &result {
        Ok(final_state) => {
            let _ = state.set(None, final_state, None).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "connector stopped with an error");
            let _ = state.set(None, "error", Some(&e.to_string())).await;
        }
    }
    result.map(|_| ())
}

/// Runs the connector; returns the state to leave behind (`stopped`, `paused` or `done`).
async fn run_with_state(
    config: &Config,
    options: RunOptions,
    source_settings: &ConnectionSettings,
    dest_settings: &ConnectionSettings,
    state: &Arc<StateStore>,
) -> Result<&'static str, RunError> {
    let RunOptions {
        mode,
        mut shutdown,
        transform,
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

    let transform: Arc<Mutex<Box<dyn Transform>>> = Arc::new(Mutex::new(transform));
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
    if previous.snapshot_done && slot_info.is_none() && !matches!(mode, Mode::Always | Mode::InitialOnly) {
        return Err(RunError::SlotLost(slot));
    }

    let dest = connect(dest_settings, "pgmorph apply").await?;
    if config.destination.synchronous_commit_off {
        let _ = dest.batch_execute("SET synchronous_commit = off").await;
    }
    let user_types: Vec<_> = selection.user_types.values().collect();
    ddl::ensure_schema_and_types(&dest, &dest_schema, &user_types).await?;

    if mode == Mode::Schemasync {
        for m in &active {
            ddl::create_table(&dest, m, false).await?;
        }
        state.set(Some("schema sync"), "paused", None).await?;
        tracing::info!(
            tables = active.len(),
            "schema sync done: destination tables created, connector paused"
        );
        return Ok("paused");
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
    let pairs: Vec<(String, String)> = to_copy
        .iter()
        .map(|m| (m.source.name.to_string(), m.destination.to_string()))
        .collect();
    if mode == Mode::NoData {
        state.mark_streaming(&pairs).await?;
        state.finish_snapshot(0).await?;
    } else if !to_copy.is_empty() {
        state
            .set(Some("initial snapshot"), "copying", None)
            .await?;
        // A resumed connector copies under a temporary slot's snapshot; the stream then skips
        // those tables' changes committed before that slot's consistent point.
        let temporary = match &fresh {
            Some(_) => None,
            None => Some(
                ReplicationStream::create_slot_with_snapshot(
                    source_settings,
                    &format!("{slot}_sync"),
                    &slot,
                    true,
                )
                .await?,
            ),
        };
        let exported = fresh.as_ref().or(temporary.as_ref()).expect("one slot");
        tracing::info!(tables = to_copy.len(), sync_point = %exported.consistent_point, "copying tables");
        state.plan_copies(&pairs).await?;
        let rows = snapshot::copy_all(SnapshotJob {
            source: source_settings.clone(),
            destination: dest_settings.clone(),
            snapshot_name: exported.snapshot_name.clone(),
            tables: to_copy.clone(),
            parallel: config.snapshot.parallel,
            transform: transform.clone(),
            state: state.clone(),
            async_commit: config.destination.synchronous_commit_off,
            sync_lsn: exported.consistent_point,
        })
        .await?;
        // Closing the idle connection drops the temporary slot.
        drop(temporary);
        state.finish_snapshot(rows as i64).await?;
        tracing::info!(rows, "snapshot finished");
    } else if !previous.snapshot_done {
        state.finish_snapshot(0).await?;
    }

    if mode == Mode::InitialOnly {
        state.set(Some("initial snapshot"), "done", None).await?;
        tracing::info!("initial_only: snapshot done, not streaming");
        return Ok("done");
    }

    let sync: HashMap<u32, Lsn> = {
        let known = state.tables().await?;
        active
            .iter()
            .filter_map(|m| {
                let lsn = known.get(&m.source.name.to_string())?.sync_lsn?;
                Some((m.source.oid, lsn))
            })
            .collect()
    };
    let (mut stream, durable) = match fresh {
        Some(created) => {
            let mut stream = created.stream;
            stream.start().await?;
            (stream, created.consistent_point)
        }
        None => {
            let last = state.load().await?.last_lsn;
            let stream = ReplicationStream::open(source_settings, &slot, &slot, last).await?;
            (stream, last)
        }
    };

    state
        .set(Some("change data capture"), "polling", None)
        .await?;
    tracing::info!(slot, from = %durable, "streaming changes");
    let mut relations = Relations::new(&dest_schema);
    for m in &mappings {
        relations.insert(m.clone());
    }
    let mut sink = Sink::new(dest, &config.name);
    let outcome = Cdc {
        stream: &mut stream,
        sink: &mut sink,
        relations: &mut relations,
        transform,
        source: &source,
        durable,
        sync,
        shutdown: shutdown.clone(),
    }
    .run()
    .await;
    let _ = shutdown.borrow_and_update();
    stream.shutdown().await;
    outcome?;
    tracing::info!("stopped cleanly");
    Ok("stopped")
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

/// The LSN type, re-exported for callers printing positions.
pub type Position = Lsn;
