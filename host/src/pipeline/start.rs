//! A connector's start: the checks, the tables mapped, the destination prepared, the slot
//! created or checked against the destination, and the tables copied that need it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::connector::{connect, Ended, Mode, ReloadOptions, RunError};
use super::copier::Copier;
use super::streaming::Streaming;
use crate::config::{Config, ConnectionSettings};
use crate::model::{Lsn, TableMapping, TableName};
use crate::sink::{align, ddl, Sink};
use crate::source::stream::{CreatedSlot, ReplicationStream, StreamError};
use crate::source::{catalog, ddl_trigger, publication, setup, versions};
use crate::state::owner;
use crate::state::{ConnectorState, StateStore, TableSync};
use crate::transform::SharedTransform;

/// A replication stream being opened while the rest of the start-up runs.
pub(super) struct EarlyStream {
    pub(super) from: Lsn,
    pub(super) stream: tokio::task::JoinHandle<Result<ReplicationStream, StreamError>>,
}

impl EarlyStream {
    /// Closes the stream cleanly (the slot is released for the next open).
    pub(super) async fn close(self) {
        if let Ok(Ok(stream)) = self.stream.await {
            stream.shutdown().await;
        }
    }
}

/// On a restart that only streams (the slot exists and every table is copied), starts opening
/// the replication stream at once: the server takes tens of milliseconds to start logical
/// decoding, which then overlaps with preparing the destination.
pub(super) async fn open_early(
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

/// The selected tables as mapped, and what mapping them needed.
pub(super) struct Planned {
    /// The default destination schema.
    pub(super) dest_schema: String,
    /// User types the tables use.
    pub(super) selection: catalog::Selection,
    /// The transform shared by the snapshot and the stream.
    pub(super) transform: SharedTransform,
    /// Every selected table's mapping.
    pub(super) mappings: Vec<Arc<TableMapping>>,
    /// The mappings of the tables not skipped.
    pub(super) active: Vec<Arc<TableMapping>>,
}

/// What a start does about copying tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyStep {
    /// Copy the tables chosen.
    Copy,
    /// Mode `no_data`: the tables chosen start streaming empty.
    MarkStreaming,
    /// Nothing to copy, but the snapshot was never recorded as done.
    FinishSnapshot,
    /// Nothing to do.
    Nothing,
}

impl CopyStep {
    pub(super) fn decide(mode: Mode, to_copy: usize, snapshot_done: bool) -> Self {
        match (mode, to_copy, snapshot_done) {
            (Mode::NoData, _, _) => CopyStep::MarkStreaming,
            (_, n, _) if n > 0 => CopyStep::Copy,
            (_, _, false) => CopyStep::FinishSnapshot,
            _ => CopyStep::Nothing,
        }
    }
}

/// Tables to copy now: never copied (new, or interrupted), or copied again by mode `always`
/// (those in `only`, or all).
pub(super) fn tables_to_copy(
    mode: Mode,
    only: Option<&[TableName]>,
    known: &HashMap<String, TableSync>,
    active: &[Arc<TableMapping>],
) -> Vec<Arc<TableMapping>> {
    active
        .iter()
        .filter(|m| {
            let copied = known
                .get(&m.source.name.to_string())
                .is_some_and(|t| t.is_copied());
            let requested =
                mode == Mode::Always && only.is_none_or(|list| list.contains(&m.source.name));
            !copied || requested
        })
        .cloned()
        .collect()
}

/// One start of the connector, from the checks to the end of streaming.
pub(super) struct Start<'a> {
    pub(super) config: &'a Config,
    pub(super) mode: Mode,
    pub(super) source_settings: &'a ConnectionSettings,
    pub(super) dest_settings: &'a ConnectionSettings,
    pub(super) state: &'a Arc<StateStore>,
    pub(super) slot: String,
}

/// Tables whose source DDL made while stopped is still in the stream: their destination
/// tables follow the older shape until it arrives.
#[derive(Clone, Copy)]
pub(super) struct Lagging<'a>(&'a HashSet<String>);

impl Start<'_> {
    /// Runs the start with `transform` until `shutdown`, reloading as `reload` says.
    pub(super) async fn run(
        &self,
        transform: SharedTransform,
        shutdown: watch::Receiver<bool>,
        reload: Option<ReloadOptions>,
    ) -> Result<Ended, RunError> {
        let (mode, state) = (self.mode, self.state);
        state.set(None, "initializing", Some("no error")).await?;
        let source = connect(self.source_settings, "pgmorph").await?;
        setup::check_server(&source).await?;
        let version = versions::server_version_num(&source)
            .await
            .map_err(setup::SetupError::from)?;
        versions::check(self.config, version)?;
        let plan = self.map_tables(&source, transform).await?;
        let mut previous_maps = state.previous_mappings(&plan.mappings).await?;
        let mut lagging = HashSet::new();
        let ddl_capture = ddl_trigger::installed(&source, &self.config.name).await;
        if ddl_capture.map_err(setup::SetupError::from)? {
            // Source DDL made while stopped reaches the destination through the stream.
            let recorded = state.recorded_source_columns().await?;
            previous_maps.retain(|table, m| {
                let same = align::source_unchanged(recorded.get(table), m);
                if !same {
                    lagging.insert(table.clone());
                }
                same
            });
        }
        self.ensure_publication(&source, &plan, version).await?;
        let previous = state.load().await?;
        let slot_info = self.check_slot(&source, &previous).await?;
        if slot_info.is_some() {
            self.align_failover(&source, version).await?;
        }
        let mut early_stream = open_early(
            state,
            self.source_settings,
            &self.slot,
            mode,
            &previous,
            slot_info.is_some(),
            &plan.active,
        )
        .await?;
        let dest = self.prepare_destination(&plan, &previous_maps).await?;
        if mode == Mode::Schemasync {
            return self.schema_sync(&dest, &plan.active).await;
        }
        let selected: Vec<String> = plan
            .active
            .iter()
            .map(|m| m.source.name.to_string())
            .collect();
        state.forget_tables_except(&selected).await?;
        // A first start (or a start after the slot was dropped) creates the main slot; its
        // exported snapshot serves the copy of every table.
        let fresh = match slot_info {
            None => Some(self.create_slot(&plan.dest_schema).await?),
            Some(_) => None,
        };
        let copier = self.copier(&plan.transform);
        let lagging = Lagging(&lagging);
        self.copy_tables(
            &dest,
            &plan.active,
            &copier,
            fresh.as_ref(),
            &previous,
            lagging,
        )
        .await?;
        if fresh.is_some() {
            self.sync_sequences(&source, &plan.dest_schema).await;
        }
        if mode == Mode::InitialOnly {
            state.set(Some("initial snapshot"), "done", None).await?;
            tracing::info!("initial_only: snapshot done, not streaming");
            return Ok(Ended::Final("done"));
        }
        let (stream, durable) = match fresh {
            Some(created) => {
                let mut stream = created.stream;
                stream.start().await?;
                (stream, created.consistent_point)
            }
            None => self.open_stream(early_stream.take()).await?,
        };
        let streaming = Streaming {
            start: self,
            plan: &plan,
            source: &source,
            copier: &copier,
        };
        streaming.run(stream, durable, dest, shutdown, reload).await
    }

    /// Reads the selected tables from the source catalog and maps each through the transform.
    pub(super) async fn map_tables(
        &self,
        source: &tokio_postgres::Client,
        transform: SharedTransform,
    ) -> Result<Planned, RunError> {
        let config = self.config;
        let dest_schema = config.dest_schema(&self.source_settings.dbname);
        let oids = catalog::select_configured(source, config).await?;
        let selection = catalog::describe(source, &oids, &dest_schema).await?;
        let mut mappings = Vec::new();
        {
            let mut t = transform.lock().await;
            for table in &selection.tables {
                let mapping = t.map_table(Arc::new(table.clone()), &dest_schema)?;
                mappings.push(Arc::new(mapping));
            }
        }
        check_collisions(&mappings)?;
        let active: Vec<Arc<TableMapping>> = mappings.iter().filter(|m| !m.skip).cloned().collect();
        if active.is_empty() {
            return Err(RunError::Unsupported(
                "every selected table is skipped by the plugins: nothing to replicate".into(),
            ));
        }
        Ok(Planned {
            dest_schema,
            selection,
            transform,
            mappings,
            active,
        })
    }

    /// Creates or updates the publication with the active tables and their row filters. A
    /// filter may change only while no slot exists or when every table is copied again.
    async fn ensure_publication(
        &self,
        source: &tokio_postgres::Client,
        plan: &Planned,
        server_version_num: u32,
    ) -> Result<(), RunError> {
        let tables: Vec<_> = plan.active.iter().map(|m| m.source.name.clone()).collect();
        let filters = self.config.row_filters();
        let slot_exists = setup::slot_info(source, &self.slot).await?.is_some();
        let recopies_all = self.mode == Mode::Always && self.config.snapshot_tables().is_none();
        let wanted = publication::Wanted {
            name: &self.slot,
            tables: &tables,
            filters: &filters,
            via_root: self.config.publish_via_root(),
            keep_filters: slot_exists && !recopies_all,
            server_version_num,
        };
        let published = publication::ensure(source, &wanted, true).await?;
        for (table, p) in published.iter().filter(|(_, p)| p.filter.is_some()) {
            tracing::info!(%table, filter = p.filter.as_deref().unwrap_or_default(), "rows published through a row filter");
        }
        Ok(())
    }

    /// Makes an existing slot's `failover` property (PostgreSQL 17+) what
    /// `source.failover_slot` asks for.
    async fn align_failover(
        &self,
        source: &tokio_postgres::Client,
        server_version_num: u32,
    ) -> Result<(), RunError> {
        let want = self.config.source.failover_slot;
        let Some(has) = setup::slot_failover(source, &self.slot, server_version_num).await? else {
            return Ok(());
        };
        if has != want {
            ReplicationStream::set_failover(self.source_settings, &self.slot, want).await?;
            tracing::info!(slot = %self.slot, failover = want, "replication slot failover property set");
        }
        Ok(())
    }

    /// The slot's state, refusing a slot that was lost after the snapshot or that confirmed
    /// more than the destination applied (mode `always` copying every table recovers).
    pub(super) async fn check_slot(
        &self,
        source: &tokio_postgres::Client,
        previous: &ConnectorState,
    ) -> Result<Option<setup::SlotInfo>, RunError> {
        let (mode, slot) = (self.mode, &self.slot);
        let mut slot_info = wait_for_slot(source, slot, &self.config.name).await?;
        let recopies_all = mode == Mode::Always && self.config.snapshot_tables().is_none();
        if slot_info.as_ref().is_some_and(|s| s.lost) {
            if !recopies_all {
                return Err(RunError::SlotInvalidated(slot.clone()));
            }
            tracing::warn!(slot, "the source invalidated the replication slot: it is created again and every table is copied again");
            setup::drop_slot(source, slot).await?;
            slot_info = None;
        }
        if previous.snapshot_done
            && slot_info.is_none()
            && !matches!(mode, Mode::Always | Mode::InitialOnly)
        {
            return Err(RunError::SlotLost(slot.clone()));
        }
        if let Some(confirmed) = gap(previous, slot_info.as_ref()) {
            if !recopies_all {
                return Err(RunError::Gap {
                    slot: slot.clone(),
                    confirmed,
                    applied: previous.last_lsn,
                });
            }
            tracing::warn!(%confirmed, applied = %previous.last_lsn, "the slot is ahead of the destination; every table is copied again, and streaming resumes at the slot's position");
            self.state.move_position(confirmed).await?;
        }
        Ok(slot_info)
    }

    /// Opens the apply connection and brings the destination in line: schemas, user types,
    /// tables whose mapping changed while stopped (followed in place or planned for a copy).
    pub(super) async fn prepare_destination(
        &self,
        plan: &Planned,
        previous_maps: &HashMap<String, TableMapping>,
    ) -> Result<tokio_postgres::Client, RunError> {
        let dest = connect(self.dest_settings, "pgmorph apply").await?;
        Sink::prepare_session(&dest, self.config.destination.synchronous_commit_off).await;
        let user_types: Vec<_> = plan.selection.user_types.values().collect();
        ddl::ensure_schema_and_types(&dest, &plan.dest_schema, &user_types).await?;
        let mut other_schemas: Vec<&str> = plan
            .active
            .iter()
            .map(|m| m.destination.schema.as_str())
            .filter(|s| *s != plan.dest_schema)
            .collect();
        other_schemas.sort();
        other_schemas.dedup();
        for schema in other_schemas {
            ddl::ensure_schema_and_types(&dest, schema, &[]).await?;
        }
        let recopy = crate::sink::align::align(&dest, previous_maps, &plan.active).await?;
        self.state.record_mappings(&plan.mappings).await?;
        if !recopy.is_empty() {
            self.state.plan_copies(&pairs_of(&recopy)).await?;
        }
        Ok(dest)
    }

    /// Mode `schemasync`: creates the mapped tables without rows and pauses.
    pub(super) async fn schema_sync(
        &self,
        dest: &tokio_postgres::Client,
        active: &[Arc<TableMapping>],
    ) -> Result<Ended, RunError> {
        for m in active {
            ddl::create_table(dest, m, false).await?;
        }
        self.state.set(Some("schema sync"), "paused", None).await?;
        tracing::info!(
            tables = active.len(),
            "schema sync done: destination tables created, connector paused"
        );
        Ok(Ended::Final("paused"))
    }

    /// Creates the main slot with an exported snapshot and records its consistent point.
    pub(super) async fn create_slot(&self, dest_schema: &str) -> Result<CreatedSlot, RunError> {
        let slot = &self.slot;
        self.state
            .set(Some("initial snapshot"), "initializing", None)
            .await?;
        let failover = self.config.source.failover_slot;
        let created = ReplicationStream::create_slot_with_snapshot(
            self.source_settings,
            slot,
            slot,
            false,
            failover,
        )
        .await?;
        tracing::info!(slot, failover, consistent_point = %created.consistent_point, "replication slot created");
        self.state
            .start_initial(dest_schema, created.consistent_point)
            .await?;
        Ok(created)
    }

    pub(super) fn copier<'b>(&'b self, transform: &'b SharedTransform) -> Copier<'b> {
        Copier {
            config: self.config,
            source: self.source_settings,
            destination: self.dest_settings,
            state: self.state,
            transform,
            slot: &self.slot,
            resume: self.mode != Mode::Always,
        }
    }

    /// Creates the destination tables and copies those that need it (see [`CopyStep`]).
    pub(super) async fn copy_tables(
        &self,
        dest: &tokio_postgres::Client,
        active: &[Arc<TableMapping>],
        copier: &Copier<'_>,
        fresh: Option<&CreatedSlot>,
        previous: &ConnectorState,
        lagging: Lagging<'_>,
    ) -> Result<(), RunError> {
        let (mode, state) = (self.mode, self.state);
        let known = state.tables().await?;
        let only = self.config.snapshot_tables();
        let to_copy = tables_to_copy(mode, only.as_deref(), &known, active);
        for m in active {
            let copied = to_copy.iter().any(|c| Arc::ptr_eq(c, m));
            if !copied && lagging.0.contains(&m.source.name.to_string()) {
                continue; // the stream brings its source DDL
            }
            ddl::create_table(dest, m, mode == Mode::Always && copied).await?;
        }
        match CopyStep::decide(mode, to_copy.len(), previous.snapshot_done) {
            CopyStep::MarkStreaming => {
                state.mark_streaming(&pairs_of(&to_copy)).await?;
                state.finish_snapshot(0).await?;
            }
            CopyStep::Copy => {
                copier.copy(&to_copy, fresh).await?;
            }
            CopyStep::FinishSnapshot => state.finish_snapshot(0).await?,
            CopyStep::Nothing => {}
        }
        Ok(())
    }

    /// At the end of the snapshot: the source's sequence values set on the destination (a
    /// failure is logged; `pgmorph sync-sequences` runs it again).
    async fn sync_sequences(&self, source: &tokio_postgres::Client, dest_schema: &str) {
        if let Err(e) = super::sequences::sync(source, self.state, dest_schema).await {
            tracing::warn!(error = %e, "sequences were not synced after the snapshot");
        }
    }

    /// Opens the stream of an existing slot from the destination's position (using the one
    /// opened early when it starts there).
    pub(super) async fn open_stream(
        &self,
        early: Option<EarlyStream>,
    ) -> Result<(ReplicationStream, Lsn), RunError> {
        let last = self.state.load().await?.last_lsn;
        let stream = match early {
            Some(early) if early.from == last => early.stream.await.map_err(|e| {
                RunError::Unsupported(format!("opening the replication stream: {e}"))
            })??,
            other => {
                if let Some(early) = other {
                    early.close().await;
                }
                ReplicationStream::open(self.source_settings, &self.slot, &self.slot, last).await?
            }
        };
        Ok((stream, last))
    }
}

/// The slot's state once no other session uses it: a session still streaming from it after
/// [`owner::GRACE`] belongs to another process (this one holds the connector's lock).
pub(super) async fn wait_for_slot(
    source: &tokio_postgres::Client,
    slot: &str,
    name: &str,
) -> Result<Option<setup::SlotInfo>, RunError> {
    let deadline = tokio::time::Instant::now() + owner::GRACE;
    loop {
        let info = setup::slot_info(source, slot).await?;
        match info.as_ref().and_then(|i| i.active_pid) {
            Some(pid) if tokio::time::Instant::now() >= deadline => {
                return Err(RunError::SlotInUse {
                    slot: slot.to_string(),
                    pid,
                    name: name.to_string(),
                })
            }
            Some(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            None => return Ok(info),
        }
    }
}

/// The slot's confirmed position when it is ahead of what the destination applied: the source
/// would resume there and the changes in between would never arrive. The destination's
/// position is written before it is acknowledged, empty stretches included, so a slot ahead
/// of it means a destination that lost committed work, or a slot moved by hand.
pub(super) fn gap(previous: &ConnectorState, info: Option<&setup::SlotInfo>) -> Option<Lsn> {
    let confirmed = info.and_then(|i| i.confirmed_flush)?;
    let applied = previous.last_lsn;
    (applied != Lsn::ZERO && confirmed > applied).then_some(confirmed)
}

pub(super) fn pairs_of(tables: &[Arc<TableMapping>]) -> Vec<(String, String)> {
    tables
        .iter()
        .map(|m| (m.source.name.to_string(), m.destination.to_string()))
        .collect()
}

pub(super) fn check_collisions(mappings: &[Arc<TableMapping>]) -> Result<(), RunError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn slot(confirmed: u64) -> setup::SlotInfo {
        setup::SlotInfo {
            confirmed_flush: Some(Lsn(confirmed)),
            active: false,
            active_pid: None,
            lost: false,
        }
    }

    pub(super) fn applied(lsn: u64) -> ConnectorState {
        ConnectorState {
            snapshot_done: true,
            last_lsn: Lsn(lsn),
        }
    }

    pub(super) fn table(oid: u32, name: &str) -> Arc<TableMapping> {
        let schema = crate::model::TableSchema {
            oid,
            name: TableName::new("public", name),
            columns: vec![],
            identity: crate::model::ReplicaIdentity::Default,
            has_primary_key: true,
        };
        Arc::new(TableMapping::identity(Arc::new(schema), "dst"))
    }

    pub(super) fn phases(entries: &[(&str, &str)]) -> HashMap<String, TableSync> {
        entries
            .iter()
            .map(|(t, phase)| {
                let sync = TableSync {
                    phase: phase.to_string(),
                    sync_lsn: None,
                };
                (format!("public.{t}"), sync)
            })
            .collect()
    }

    pub(super) fn names(tables: &[Arc<TableMapping>]) -> Vec<String> {
        tables.iter().map(|m| m.source.name.name.clone()).collect()
    }

    #[test]
    pub(super) fn tables_never_copied_are_copied_and_always_copies_what_it_is_told() {
        let active = [table(1, "a"), table(2, "b"), table(3, "c")];
        let known = phases(&[("a", "streaming"), ("b", "copying")]);
        let copy =
            |mode, only: Option<&[TableName]>| names(&tables_to_copy(mode, only, &known, &active));
        assert_eq!(copy(Mode::Initial, None), ["b", "c"], "interrupted and new");
        assert_eq!(copy(Mode::NoData, None), ["b", "c"]);
        assert_eq!(
            copy(Mode::Always, None),
            ["a", "b", "c"],
            "every table again"
        );
        let only = [TableName::new("public", "a")];
        assert_eq!(
            copy(Mode::Always, Some(&only)),
            ["a", "b", "c"],
            "a asked for, b and c never copied"
        );
        let known = phases(&[("a", "copied"), ("b", "streaming"), ("c", "streaming")]);
        let copy =
            |mode, only: Option<&[TableName]>| names(&tables_to_copy(mode, only, &known, &active));
        assert_eq!(copy(Mode::Always, Some(&only)), ["a"]);
        assert!(copy(Mode::Initial, None).is_empty());
    }

    #[test]
    pub(super) fn the_copy_step_follows_the_mode_and_what_is_left() {
        assert_eq!(
            CopyStep::decide(Mode::NoData, 3, false),
            CopyStep::MarkStreaming
        );
        assert_eq!(CopyStep::decide(Mode::Initial, 3, true), CopyStep::Copy);
        assert_eq!(CopyStep::decide(Mode::Always, 1, true), CopyStep::Copy);
        assert_eq!(
            CopyStep::decide(Mode::Initial, 0, false),
            CopyStep::FinishSnapshot
        );
        assert_eq!(CopyStep::decide(Mode::Initial, 0, true), CopyStep::Nothing);
    }

    #[test]
    pub(super) fn a_slot_ahead_of_the_destination_is_a_gap() {
        assert_eq!(gap(&applied(100), Some(&slot(150))), Some(Lsn(150)));
    }

    #[test]
    pub(super) fn a_slot_at_or_behind_the_destination_is_no_gap() {
        assert_eq!(gap(&applied(100), Some(&slot(100))), None);
        assert_eq!(
            gap(&applied(100), Some(&slot(40))),
            None,
            "replayed and skipped"
        );
        assert_eq!(gap(&applied(100), None), None, "no slot yet");
        assert_eq!(
            gap(&applied(0), Some(&slot(40))),
            None,
            "nothing applied yet"
        );
    }
}
