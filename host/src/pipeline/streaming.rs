//! The streaming phase of a start: the CDC loop with its destination writer, plugin
//! reloads, the retained-WAL watchdog, and tables copied again between transactions.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::cdc::row_pool::RowPool;
use super::cdc::{Cdc, CdcError, InProgress, SideConnections, Stopped};
use super::connector::{connect, Ended, ReloadOptions, RunError};
use super::copier::Copier;
use super::relations::Relations;
use super::start::{Planned, Start};
use crate::config::{ConnectionSettings, OnDdlError};
use crate::model::{Lsn, TableMapping};
use crate::plugin::reload::{self, Fingerprint, ReloadSetup};
use crate::sink::lanes::LaneStart;
use crate::sink::{ddl, Lanes, Sink};
use crate::source::setup;
use crate::source::stream::ReplicationStream;
use crate::state::StateStore;

/// The streaming phase of a start.
pub(super) struct Streaming<'a> {
    pub(super) start: &'a Start<'a>,
    pub(super) plan: &'a Planned,
    pub(super) source: &'a tokio_postgres::Client,
    pub(super) copier: &'a Copier<'a>,
}

impl Streaming<'_> {
    /// Streams changes until shutdown, a restart with another config, or an error.
    pub(super) async fn run(
        &self,
        mut stream: ReplicationStream,
        durable: Lsn,
        dest: tokio_postgres::Client,
        mut shutdown: watch::Receiver<bool>,
        reload: Option<ReloadOptions>,
    ) -> Result<Ended, RunError> {
        let (config, state, plan) = (self.start.config, self.start.state, self.plan);
        let _watchdog = AbortOnDrop(tokio::spawn(watch_retained_wal(
            self.start.source_settings.clone(),
            self.start.slot.clone(),
            config.source.max_retained_wal_mb,
        )));
        let mut relations = Relations::new(&plan.dest_schema);
        for m in &plan.mappings {
            relations.insert(m.clone());
        }
        let reloads = self.watch_reloads(reload).await?;
        let mut sink = Sink::open(dest, &config.name, config.destination.on_apply_error)
            .await
            .map_err(CdcError::from)?;
        let mut pids = vec![sink.backend_pid().await.map_err(CdcError::from)?];
        sink.skip_refused_ddl = config.destination.on_ddl_error == OnDdlError::Skip;
        sink.reorder_tables =
            ddl::free_of_foreign_keys_and_triggers(sink.client(), &plan.active).await?;
        tracing::info!(
            grouped_per_table = sink.reorder_tables,
            "changes inside a destination transaction are grouped per table when the destination \
             tables have no foreign keys or triggers"
        );
        let text_tables = ddl::other_typed_tables(sink.client(), &plan.active).await;
        let mut sink = self.open_lanes(sink, &mut pids).await?;
        // Only now, with the reload watcher registered, is the connector reported as streaming.
        state
            .set(Some("change data capture"), "polling", None)
            .await?;
        tracing::info!(slot = self.start.slot, from = %durable, "streaming changes");
        let in_progress = InProgress::new(self.side_connections(&stream, &sink), pids);
        let mut cdc = Cdc {
            stream: &mut stream,
            sink: &mut sink,
            relations: &mut relations,
            transform: plan.transform.clone(),
            source: self.source,
            durable,
            reading: durable,
            last_progress: crate::state::Progress {
                lsn: durable,
                ..Default::default()
            },
            sync: sync_points(state, &plan.active).await?,
            shutdown: shutdown.clone(),
            state: state.clone(),
            reloads,
            restart_with: None,
            in_progress,
            row_pool: RowPool::new(plan.transform.clone(), config.apply.parallel),
            text_tables,
        };
        let outcome = self.stream_until_stopped(&mut cdc).await;
        drop(cdc);
        let _ = shutdown.borrow_and_update();
        stream.shutdown().await;
        let ended = outcome?;
        if matches!(ended, Ended::Final(_)) {
            tracing::info!("stopped cleanly");
        }
        Ok(ended)
    }

    /// How large transactions sent while they run get connections of their own, when the
    /// stream sends them.
    fn side_connections(
        &self,
        stream: &ReplicationStream,
        lanes: &Lanes,
    ) -> Option<SideConnections> {
        let config = self.start.config;
        stream.streams_in_progress().then(|| SideConnections {
            settings: self.start.dest_settings.clone(),
            connector: config.name.clone(),
            on_apply_error: config.destination.on_apply_error,
            async_commit: config.destination.synchronous_commit_off,
            reorder_tables: lanes.main_ref().reorder_tables,
            settles_lanes: !lanes.is_single(),
        })
    }

    /// The apply lanes (`apply.parallel`): `main` and the other connections, opened as it was;
    /// their backends join `pids`.
    async fn open_lanes(&self, main: Sink, pids: &mut Vec<i32>) -> Result<Lanes, RunError> {
        let (config, state) = (self.start.config, self.start.state);
        let (main_lsn, lanes) = state.lane_positions().await?;
        let start = LaneStart {
            main: main_lsn,
            lanes,
            one_lane_until: config.apply.resume_one_lane_until,
        };
        let mut extra = Vec::new();
        for lane in 1..config.apply.parallel {
            let name = format!("pgmorph apply lane {lane}");
            let client = connect(self.start.dest_settings, &name).await?;
            Sink::prepare_session(&client, config.destination.synchronous_commit_off).await;
            let mut sink = Sink::open(client, &config.name, config.destination.on_apply_error)
                .await
                .map_err(CdcError::from)?;
            pids.push(sink.backend_pid().await.map_err(CdcError::from)?);
            extra.push(sink);
        }
        let spread = match extra.is_empty() {
            true => Default::default(),
            false => ddl::spreadable_tables(main.client(), &self.plan.active).await?,
        };
        if !extra.is_empty() {
            tracing::info!(
                lanes = extra.len() + 1,
                spread_tables = spread.len(),
                tables = self.plan.active.len(),
                "changes of tables with a primary key and no foreign keys, triggers or other \
                 unique constraints are applied on several connections"
            );
        }
        Ok(Lanes::new(main, extra, spread, start))
    }

    /// Starts watching the plugin directory and config file, when reloading is on.
    pub(super) async fn watch_reloads(
        &self,
        reload: Option<ReloadOptions>,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<reload::Prepared>>, RunError> {
        let Some(r) = reload else { return Ok(None) };
        let (config, state) = (self.start.config, self.start.state);
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
            tables: self
                .plan
                .mappings
                .iter()
                .map(|m| m.source.clone())
                .collect(),
            dest_schema: self.plan.dest_schema.clone(),
            state: state.clone(),
            current,
        };
        let rx = reload::spawn(setup).map_err(|e| {
            RunError::Unsupported(format!(
                "watching the plugin directory and config file: {e}"
            ))
        })?;
        Ok(Some(rx))
    }

    /// Runs the CDC loop, copying tables between transactions when asked; returns how the
    /// run ends: stopped, or to start again (with a reloaded config, or with large
    /// transactions sent whole).
    pub(super) async fn stream_until_stopped(&self, cdc: &mut Cdc<'_>) -> Result<Ended, RunError> {
        loop {
            match cdc.run().await? {
                Stopped::Shutdown => return Ok(Ended::Final("stopped")),
                Stopped::Restart => match cdc.restart_with.take() {
                    Some(prepared) => return Ok(Ended::Restart(Box::new(prepared))),
                    None => return Ok(Ended::Final("stopped")),
                },
                Stopped::Resync => cdc.sync = self.resync(cdc).await?,
                Stopped::WholeTransactions(reason) => {
                    crate::metrics::large_transaction("whole");
                    tracing::warn!(
                        reason,
                        "a large transaction cannot be applied while it runs: starting again \
                         from the destination's position, with large transactions applied \
                         after their commit from now on"
                    );
                    return Ok(Ended::WholeTransactions);
                }
                Stopped::OneLane(lsn) => return Ok(Ended::OneLane(lsn)),
                Stopped::TextValues(reason) => {
                    tracing::info!(
                        reason,
                        "starting again from the destination's position, with the source \
                         sending text values from now on"
                    );
                    return Ok(Ended::TextValues);
                }
            }
        }
    }

    /// Between transactions: copies the tables marked pending, then returns the new sync
    /// points for streaming on.
    pub(super) async fn resync(&self, cdc: &mut Cdc<'_>) -> Result<HashMap<u32, Lsn>, RunError> {
        let state = self.start.state;
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
            ddl::create_table(cdc.sink.main().client(), m, false).await?;
        }
        let other = ddl::other_typed_tables(cdc.sink.main().client(), &pending).await;
        cdc.text_tables.extend(other);
        if !pending.is_empty() {
            tracing::info!(tables = pending.len(), "re-syncing tables");
            self.copier.copy(&pending, None).await?;
        }
        state
            .set(Some("change data capture"), "polling", None)
            .await?;
        let current: Vec<Arc<TableMapping>> = cdc.relations.all().cloned().collect();
        sync_points(state, &current).await
    }
}

/// Ends a task when dropped, also when a start fails half way.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Samples the slot's retention every 5 seconds for the metrics, and warns every 30 seconds
/// while the slot keeps more WAL on the source than `limit_mb`.
pub(super) async fn watch_retained_wal(settings: ConnectionSettings, slot: String, limit_mb: u64) {
    const SAMPLE: std::time::Duration = std::time::Duration::from_secs(5);
    const WARN_EVERY: u32 = 6;
    let Ok(client) = settings.connect("pgmorph watchdog").await else {
        return;
    };
    for sample in 1u32.. {
        if let Ok(Some(r)) = setup::retention(&client, &slot).await {
            crate::metrics::slot_sampled(r.behind, r.retained);
            if sample % WARN_EVERY == 0 {
                warn_about_retention(&slot, r, limit_mb);
            }
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

/// Warns while the slot keeps more WAL than `limit_mb`, and before the source invalidates it:
/// when less than a quarter of `max_slot_wal_keep_size` is left (`safe_wal_size`), or when it
/// is already past it (`unreserved`).
fn warn_about_retention(slot: &str, r: setup::Retention, limit_mb: u64) {
    let mb = r.retained >> 20;
    if mb > limit_mb {
        tracing::warn!(
            slot,
            retained_mb = mb,
            limit_mb,
            "the replication slot retains more WAL than max_retained_wal_mb on the source"
        );
    }
    let nearly_full = r
        .safe
        .is_some_and(|safe| safe.max(0) as u64 <= r.retained / 3);
    if nearly_full || matches!(r.status, Some("unreserved" | "lost")) {
        tracing::warn!(
            slot,
            retained_mb = mb,
            safe_wal_mb = r.safe.map(|s| s >> 20),
            wal_status = r.status,
            "the source will invalidate the replication slot soon (max_slot_wal_keep_size): \
             changes would then be lost and every table copied again; let the connector catch \
             up, or raise max_slot_wal_keep_size"
        );
    }
}

/// Per relation, the position before which a table's changes are already in its copy.
pub(super) async fn sync_points(
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
