//! Copying tables under an exported snapshot while the connector starts or streams.

use std::collections::HashSet;
use std::sync::Arc;

use super::connector::RunError;
use super::snapshot::{self, SnapshotJob};
use super::start::pairs_of;
use crate::config::{Config, ConnectionSettings};
use crate::model::{TableMapping, TableName};
use crate::sink::ddl;
use crate::source::stream::{CreatedSlot, ReplicationStream};
use crate::state::{StateError, StateStore};
use crate::transform::SharedTransform;

/// Copies tables under an exported snapshot: the main slot's on a first start, else a
/// temporary slot's, whose consistent point becomes the tables' sync point.
pub(super) struct Copier<'a> {
    pub(super) config: &'a Config,
    pub(super) source: &'a ConnectionSettings,
    pub(super) destination: &'a ConnectionSettings,
    pub(super) state: &'a Arc<StateStore>,
    pub(super) transform: &'a SharedTransform,
    pub(super) slot: &'a str,
    /// Interrupted copies of split tables resume by page range (not with mode `always`).
    pub(super) resume: bool,
}

impl Copier<'_> {
    pub(super) async fn copy(
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
                    false,
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
        let text_tables = self.text_tables(tables).await?;
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
            time_us: crate::model::Provenance::unix_us(std::time::SystemTime::now()),
            resume,
            row_filters: self.config.row_filters(),
            text_tables,
        })
        .await?;
        // Closing the idle connection drops the temporary slot.
        drop(temporary);
        self.state.finish_snapshot(rows as i64).await?;
        tracing::info!(rows, "snapshot finished");
        Ok(rows)
    }

    /// The destination tables among `tables` whose rows must cross as text although their
    /// mapping allows binary ([`ddl::other_typed_tables`]).
    async fn text_tables(
        &self,
        tables: &[Arc<TableMapping>],
    ) -> Result<HashSet<TableName>, RunError> {
        let client = super::connector::connect(self.destination, "pgmorph snapshot plan").await?;
        Ok(ddl::other_typed_tables(&client, tables).await)
    }

    /// The tables among `tables` whose interrupted copy resumes by page range: page ranges
    /// were recorded as copied (they are forgotten when a copy completes), and rows can be
    /// merged by key on the destination.
    pub(super) async fn resumable(
        &self,
        tables: &[Arc<TableMapping>],
    ) -> Result<snapshot::Resume, RunError> {
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
            let file = crate::sink::load::relation_file(self.state.client(), &m.destination)
                .await
                .map_err(StateError::from)?;
            let layout = crate::sink::load::layout(m);
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
