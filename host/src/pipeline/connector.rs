//! One connector's life: check the source, map the tables, snapshot if the mode asks for it,
//! then stream changes until shutdown.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use super::cdc::CdcError;
use super::reconnect::Retries;
use super::snapshot::SnapshotError;
use super::start::Start;
use crate::config::{Config, ConnectionError, ConnectionSettings};
use crate::error_kind::ErrorKind;
use crate::model::Lsn;
use crate::plugin::reload::{self, Fingerprint};
use crate::sink::ddl;
use crate::source::stream::StreamError;
use crate::source::{catalog, publication, setup, versions};
use crate::state::local;
use crate::state::owner::{OwnerError, Ownership, Wait};
use crate::state::{StateError, StateStore};
use crate::transform::{SharedTransform, Transform, TransformError};

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
        /// Retry later (unreachable) or fix config (refused), from the SQLSTATE.
        kind: ErrorKind,
    },
    /// Server checks or publication/slot setup failed.
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    /// The config asks for a feature the source's PostgreSQL lacks.
    #[error(transparent)]
    Version(#[from] versions::VersionError),
    /// The publication cannot apply the configured row filters.
    #[error(transparent)]
    Publication(#[from] publication::PublicationError),
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
    /// The source invalidated the slot: changes since the connector last read are gone.
    #[error(
        "replication slot {0} was invalidated by the source (it kept more WAL than \
         max_slot_wal_keep_size allows): the changes since the connector last read are lost. \
         To recover, run `pgmorph run --mode always`: it creates the slot again and copies every \
         table again at its snapshot"
    )]
    SlotInvalidated(String),
    /// Another process runs the connector, or this one lost its ownership.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// The slot is in use by a session that does not hold the connector's lock.
    #[error(
        "replication slot {slot} is in use on the source by process {pid}: another process runs \
         connector {name} (perhaps against another destination); stop it first"
    )]
    SlotInUse {
        /// The slot.
        slot: String,
        /// The walsender's pid on the source.
        pid: i32,
        /// The connector.
        name: String,
    },
    /// The slot confirmed changes the destination does not have.
    #[error(
        "replication slot {slot} has confirmed changes up to {confirmed}, but the destination \
         has applied only up to {applied}: the changes between them are lost for this \
         destination. Nothing was streamed past the gap. To recover, copy the tables again at a \
         new snapshot: `pgmorph run --mode always` (every table), or `pgmorph resync --table T` \
         for each table you know was written in that range"
    )]
    Gap {
        /// The slot.
        slot: String,
        /// The slot's confirmed position.
        confirmed: Lsn,
        /// The destination's stored position.
        applied: Lsn,
    },
    /// A requested option is not available.
    #[error("{0}")]
    Unsupported(String),
}

impl RunError {
    /// What the operator should do about it (exit code and state row).
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind::*;
        let by_cause = || ErrorKind::of_cause(self).unwrap_or(FixServer);
        match self {
            RunError::Settings(_) | RunError::Unsupported(_) | RunError::Collision { .. } => {
                FixConfig
            }
            RunError::Connect { kind, .. } => *kind,
            RunError::Setup(setup::SetupError::Query(e)) => ErrorKind::of_postgres(e),
            RunError::Publication(publication::PublicationError::Query(e)) => {
                ErrorKind::of_postgres(e)
            }
            RunError::Version(_) | RunError::Publication(_) => FixConfig,
            RunError::Setup(_) | RunError::Catalog(_) | RunError::SlotLost(_) => FixServer,
            RunError::SlotInvalidated(_) => FixServer,
            RunError::Gap { .. } => FixServer,
            RunError::Transform(_) => FixPlugin,
            RunError::Owner(_) | RunError::SlotInUse { .. } => RetryLater,
            RunError::Stream(e) => stream_kind(e),
            RunError::Cdc(CdcError::Stream(e)) => stream_kind(e),
            RunError::Cdc(CdcError::Transform(_) | CdcError::Relation(_)) => FixPlugin,
            RunError::Cdc(CdcError::Ended) => RetryLater,
            RunError::Snapshot(SnapshotError::Row { .. }) => FixPlugin,
            RunError::Ddl(_) | RunError::State(_) | RunError::Snapshot(_) | RunError::Cdc(_) => {
                by_cause()
            }
        }
    }
}

fn stream_kind(e: &StreamError) -> ErrorKind {
    match e {
        StreamError::Auth { .. } | StreamError::Settings { .. } => ErrorKind::FixConfig,
        StreamError::Transport {
            code: Some(code), ..
        } => ErrorKind::of_sqlstate(code),
        StreamError::Transport { code: None, .. } => ErrorKind::RetryLater,
        StreamError::Protocol(_) | StreamError::Decode(_) => ErrorKind::Bug,
    }
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
    /// Whether to wait for a process already running the connector to end.
    pub wait: Wait,
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
    let e = match settings.connect(app).await {
        Ok(client) => return Ok(client),
        Err(e) => e,
    };
    let (kind, message) = match (e.as_db_error(), settings.certificate_problem(&e)) {
        // A refused certificate needs a config change (sslrootcert, sslmode or the host).
        (_, Some(explained)) => (ErrorKind::FixConfig, explained),
        (Some(db), None) => (ErrorKind::of_postgres(&e), db.message().to_string()),
        (None, None) => match settings.diagnose(app).await {
            // The driver's error has no code; pgmorph's own transport tells the settings
            // problems (TLS refused, no password) from a server that cannot be reached.
            Some(w) if w.needs_settings_change() => (ErrorKind::FixConfig, w.to_string()),
            _ => (ErrorKind::of_postgres(&e), crate::error_chain::one_line(&e)),
        },
    };
    Err(RunError::Connect {
        side: settings.side,
        who: settings.describe(),
        kind,
        message,
    })
}

/// Runs a connector until shutdown (Ok) or a fatal error, recording state in the destination.
///
/// First the process takes the connector's ownership (see [`owner`]): while another process
/// runs it, this one touches nothing and refuses (or waits, with [`Wait::UntilFree`]).
///
/// An error is also kept on this machine ([`local`]), for `status` to show when the
/// destination could not be told.
pub async fn run(config: &Config, options: RunOptions) -> Result<(), RunError> {
    let result = run_owned(config, options).await;
    if let Err(e) = &result {
        let refused = matches!(
            e,
            RunError::Owner(OwnerError::Held { .. } | OwnerError::Interrupted(_))
        );
        if !refused {
            let text = crate::error_chain::one_line(e);
            local::record(&config.name, &text, e.kind().as_str());
        }
    }
    result
}

async fn run_owned(config: &Config, options: RunOptions) -> Result<(), RunError> {
    // Both connection strings, password files and certificate files are checked before
    // anything connects.
    config.source_connection()?;
    config.destination_connection()?;
    let RunOptions {
        mode,
        shutdown,
        transform,
        reload,
        wait,
    } = options;
    let mut ownership = Some(claim(config, wait, shutdown.clone()).await?);
    local::clear(&config.name);
    let mut attempt = Attempt {
        config: config.clone(),
        mode,
        shutdown,
        transform: Arc::new(Mutex::new(transform)),
        reload,
    };
    let mut retries = Retries::new(&config.reconnect);
    let mut unrecorded: Option<Unrecorded> = None;
    loop {
        let (result, state) = attempt.run(&mut ownership, &mut unrecorded).await;
        if state.as_ref().is_some_and(|s| s.went_live()) {
            retries.went_live();
        }
        if state.as_ref().is_some_and(|s| s.streamed()) {
            // What a start had to do once (mode `always` copying, `no_data` marking) is done.
            attempt.mode = Mode::Initial;
        }
        let e = match result {
            Ok(Ended::Restart(prepared)) => {
                attempt.restart_with(*prepared);
                continue;
            }
            Ok(Ended::WholeTransactions) => {
                attempt.config.source.stream_large_transactions = false;
                continue;
            }
            Ok(Ended::OneLane(lsn)) => {
                attempt.config.apply.resume_one_lane_until = lsn;
                continue;
            }
            Ok(Ended::TextValues) => {
                attempt.config.source.binary_values = false;
                continue;
            }
            Ok(Ended::Final(final_state)) => {
                if let Some(state) = state {
                    let stage = (final_state == "paused").then_some("schema sync");
                    let _ = state.set(stage, final_state, None).await;
                }
                return Ok(());
            }
            Err(e) => e,
        };
        crate::metrics::error(e.kind().as_str());
        let Some(pause) = retries.after(&e) else {
            return Err(stop_with(e, state.as_deref(), ownership.is_some()).await);
        };
        let text = crate::error_chain::one_line(&e);
        tracing::warn!(attempt = retries.failures(), ?pause, error = %text, "connection lost; connecting again");
        crate::metrics::reconnecting();
        local::record_retry(&config.name, &text, e.kind().as_str(), retries.failures());
        let pending = Unrecorded::add(unrecorded.take(), retries.failures(), text);
        unrecorded = match (&state, &ownership) {
            (Some(state), Some(_)) => pending.record(state).await,
            _ => Some(pending),
        };
        drop(state);
        let mut shutdown = attempt.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {
                tracing::info!("stopped while waiting to connect again");
                return Ok(());
            }
        }
    }
}

/// Reconnection attempts not yet in the state row (the destination may be what is gone).
struct Unrecorded {
    /// The latest attempt's number in the current run of failures.
    attempt: u32,
    /// Attempts not yet counted in the row.
    count: u32,
    /// The latest error.
    error: String,
}

impl Unrecorded {
    fn add(earlier: Option<Self>, attempt: u32, error: String) -> Self {
        Self {
            attempt,
            count: earlier.map_or(0, |e| e.count) + 1,
            error,
        }
    }

    /// Writes the attempts into the state row; gives them back if the destination did not
    /// take them within a few seconds.
    async fn record(self, state: &StateStore) -> Option<Self> {
        const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
        let write = state.record_retry(self.attempt, self.count, &self.error);
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(())) => None,
            _ => Some(self),
        }
    }
}

/// Takes the connector's ownership on a destination connection of its own.
async fn claim(
    config: &Config,
    wait: Wait,
    shutdown: watch::Receiver<bool>,
) -> Result<Ownership, RunError> {
    let client = connect(&config.destination_connection()?, "pgmorph owner").await?;
    Ok(Ownership::claim(client, &config.name, wait, shutdown).await?)
}

/// Records `e` in the state row (when this process still owns the connector) and the log.
async fn stop_with(e: RunError, state: Option<&StateStore>, owned: bool) -> RunError {
    let text = crate::error_chain::one_line(&e);
    tracing::error!(error = %text, "connector stopped with an error");
    // Without the lock, another process may own the state row by now.
    let lost = matches!(e, RunError::Owner(OwnerError::Lost(_)));
    if let (Some(state), true, false) = (state, owned, lost) {
        let _ = state.set(None, "error", Some(&text)).await;
        let _ = state.set_error_kind(e.kind().as_str()).await;
    }
    e
}

/// What each start of a running connector needs; a reload or a reconnection starts again
/// with it.
struct Attempt {
    config: Config,
    mode: Mode,
    shutdown: watch::Receiver<bool>,
    /// Kept across starts: a reconnection goes on with the plugins as last reloaded.
    transform: SharedTransform,
    reload: Option<ReloadOptions>,
}

impl Attempt {
    /// One start: ownership checked (taken again if its session was lost), the state store
    /// opened, the connector run. Returns the outcome and the state store, if it opened.
    async fn run(
        &self,
        ownership: &mut Option<Ownership>,
        unrecorded: &mut Option<Unrecorded>,
    ) -> (Result<Ended, RunError>, Option<Arc<StateStore>>) {
        let owner = match self.own(ownership).await {
            Ok(owner) => owner,
            Err(e) => return (Err(e), None),
        };
        let state = match self.open_state().await {
            Ok(state) => state,
            Err(e) => return (Err(e), None),
        };
        if let Some(pending) = unrecorded.take() {
            *unrecorded = pending.record(&state).await;
        }
        let result = tokio::select! {
            result = self.start(&state) => result,
            lost = owner.lost() => Err(lost.into()),
        };
        if matches!(result, Err(RunError::Owner(OwnerError::Lost(_)))) {
            *ownership = None;
        }
        (result, Some(state))
    }

    /// The ownership, taken again when its session is gone (refused when another process
    /// took the connector over meanwhile).
    async fn own<'o>(
        &self,
        ownership: &'o mut Option<Ownership>,
    ) -> Result<&'o Ownership, RunError> {
        let alive = match ownership.as_ref() {
            Some(o) => o.is_alive().await,
            None => false,
        };
        if !alive {
            *ownership = None;
            let claimed = claim(&self.config, Wait::Briefly, self.shutdown.clone()).await?;
            tracing::info!(
                connector = self.config.name,
                "connector ownership taken again"
            );
            *ownership = Some(claimed);
        }
        Ok(ownership.as_ref().expect("just claimed"))
    }

    async fn open_state(&self) -> Result<Arc<StateStore>, RunError> {
        let dest_settings = self.config.destination_connection()?;
        let client = connect(&dest_settings, "pgmorph state").await?;
        Ok(Arc::new(StateStore::open(client, &self.config.name).await?))
    }

    async fn start(&self, state: &Arc<StateStore>) -> Result<Ended, RunError> {
        let config = &self.config;
        let source_settings = config.source_connection()?;
        let dest_settings = config.destination_connection()?;
        let start = Start {
            config,
            mode: self.mode,
            source_settings: &source_settings,
            dest_settings: &dest_settings,
            state,
            slot: config.slot_name(),
        };
        start
            .run(
                self.transform.clone(),
                self.shutdown.clone(),
                self.reload.clone(),
            )
            .await
    }

    /// The reloaded config selects other tables: the next start uses it and its plugins.
    fn restart_with(&mut self, prepared: reload::Prepared) {
        let reload::Prepared {
            transform,
            fingerprint,
            config,
            ..
        } = prepared;
        self.config = config;
        self.mode = Mode::Initial;
        self.transform = Arc::new(Mutex::new(transform));
        self.reload = self.reload.take().map(|r| ReloadOptions {
            loaded: Some(fingerprint),
            ..r
        });
    }
}

/// How a run ended without error.
pub(super) enum Ended {
    /// Stopped, paused (schema sync) or done (initial_only): the state to leave behind.
    Final(&'static str),
    /// The reloaded config selects other tables: start again with it.
    Restart(Box<crate::plugin::reload::Prepared>),
    /// A large transaction could not be applied while it ran: start again, with the source
    /// sending transactions whole.
    WholeTransactions,
    /// A change needed one apply connection after others took part of its transaction: start
    /// again, applying on one connection until past the source transaction committed here.
    OneLane(crate::model::Lsn),
    /// A table whose values must be text changed while the source sent binary values: start
    /// again with text values.
    TextValues,
}
