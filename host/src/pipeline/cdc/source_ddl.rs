//! Source DDL in the CDC loop: a message of the source's event trigger (see
//! [`crate::source::ddl_trigger`]) maps the table before and after the change through the
//! transform, and the destination table follows the difference, in the destination
//! transaction of the source transaction that made the change.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::flow::Flow;
use super::{Cdc, CdcError};
use crate::model::{Lsn, TableMapping, TableName, TableSchema, UserType};
use crate::pipeline::relations::RelationError;
use crate::sink::schema_change::{drop_table_sql, schema_change_sql, DdlOutcome, SourceChange};
use crate::sink::{ddl, ApplyError};
use crate::source::ddl_event::{DdlEvent, TableState};
use crate::state::ddl_history::{self, DdlRecord};

/// The table before and after one DDL command, as the transform maps them.
struct Mapped {
    old: TableMapping,
    new: Arc<TableMapping>,
    types: Vec<UserType>,
    /// The old state the old mapping was built from (absent: the mapping as known).
    old_state: Option<TableState>,
}

impl Cdc<'_> {
    /// A logical message of the source's DDL trigger, inside a source transaction.
    pub(super) async fn on_source_ddl(
        &mut self,
        f: &mut Flow,
        content: &[u8],
    ) -> Result<(), CdcError> {
        let event = DdlEvent::parse(content).map_err(|e| ApplyError::Unusable {
            table: "(source DDL)".into(),
            message: e.to_string(),
        })?;
        if event.connector != self.state.name() {
            return Ok(());
        }
        self.before_one_lane(f).await?;
        let Ok(current) = self.relations.get(event.oid).cloned() else {
            if let (None, Some(new)) = (&event.old, &event.new) {
                self.flush(&mut f.pending).await?;
                let lsn = f.tx.as_ref().map_or(Lsn::ZERO, |t| t.final_lsn);
                return self.follow_create(&event, new, lsn).await;
            }
            tracing::debug!(
                oid = event.oid,
                tag = event.tag,
                "DDL on a table not replicated here"
            );
            return Ok(());
        };
        self.flush(&mut f.pending).await?;
        let tx = f.tx.as_ref();
        let lsn = tx.map_or(Lsn::ZERO, |t| t.final_lsn);
        let copied_after = self.copied_after(event.oid, tx);
        match &event.new {
            Some(new) => {
                self.follow_change(&event, new, &current, lsn, copied_after)
                    .await
            }
            None => self.follow_drop(&event, &current, lsn).await,
        }
    }

    /// A changed table: the destination follows the difference between the two mappings.
    async fn follow_change(
        &mut self,
        event: &DdlEvent,
        new_state: &TableState,
        current: &Arc<TableMapping>,
        lsn: Lsn,
        copied_after: bool,
    ) -> Result<(), CdcError> {
        let mapped = self.map_both(event, new_state, current).await?;
        let (old, new) = (&mapped.old, &mapped.new);
        let statements = if new.skip || copied_after {
            Vec::new()
        } else {
            change_statements(&mapped, new_state)
        };
        let connector = self.state.name().to_string();
        let record = DdlRecord {
            connector: &connector,
            lsn: lsn.to_string(),
            source_table: &new.source.name,
            dest_table: &new.destination,
            tag: &event.tag,
            statement: &event.statement,
            applied: &statements,
        };
        if old.skip && !new.skip {
            let reason = "the plugins replicate the table only after this change; \
                          copy it with pgmorph resync";
            return self.cannot_follow(&record, reason.into()).await;
        }
        if let Err(reason) = self.ensure_types(&mapped).await {
            return self.cannot_follow(&record, reason).await;
        }
        let renamed = (old.source.name != new.source.name).then(|| {
            ddl_history::rename_sql(
                record.connector,
                &old.source.name,
                &new.source.name,
                &new.destination,
            )
        });
        let outcome = self
            .sink
            .apply_source_ddl(&statements, &record, renamed)
            .await?;
        self.state.record_mapping(new).await?;
        settle_outcome(&mut self.text_tables, &record, &outcome);
        self.relations.insert(mapped.new);
        Ok(())
    }

    /// The user types the new mapping needs, in the default destination schema (see
    /// `catalog::resolve_type`); the error in one line.
    async fn ensure_types(&mut self, mapped: &Mapped) -> Result<(), String> {
        if mapped.types.is_empty() || mapped.new.skip {
            return Ok(());
        }
        let refs: Vec<_> = mapped.types.iter().collect();
        let schema = self.relations.dest_schema().to_string();
        let dest = self
            .sink
            .settled()
            .await
            .map_err(|e| crate::error_chain::one_line(&e))?;
        ddl::ensure_schema_and_types(dest, &schema, &refs)
            .await
            .map_err(|e| crate::error_chain::one_line(&e))
    }

    /// A command pgmorph cannot follow: it stops the connector, or under
    /// `on_ddl_error = "skip"` is recorded as skipped (the mapping stays as it was).
    async fn cannot_follow(
        &mut self,
        record: &DdlRecord<'_>,
        reason: String,
    ) -> Result<(), CdcError> {
        if !self.sink.main_ref().skip_refused_ddl {
            return Err(ApplyError::Unusable {
                table: record.source_table.to_string(),
                message: format!("source DDL {:?}: {reason}", record.statement),
            }
            .into());
        }
        self.sink.skip_source_ddl(record, &reason).await?;
        settle_outcome(&mut self.text_tables, record, &DdlOutcome::Skipped(reason));
        Ok(())
    }

    /// A dropped table: no more changes come for it; its destination table is kept, or
    /// dropped when the triggers were installed with `--drop-tables`.
    async fn follow_drop(
        &mut self,
        event: &DdlEvent,
        current: &Arc<TableMapping>,
        lsn: Lsn,
    ) -> Result<(), CdcError> {
        let statements = match event.drop_destination && !current.skip {
            true => vec![drop_table_sql(&current.destination)],
            false => Vec::new(),
        };
        let record = DdlRecord {
            connector: self.state.name(),
            lsn: lsn.to_string(),
            source_table: &current.source.name,
            dest_table: &current.destination,
            tag: &event.tag,
            statement: &event.statement,
            applied: &statements,
        };
        let outcome = self
            .sink
            .apply_source_ddl(&statements, &record, None)
            .await?;
        settle_outcome(&mut self.text_tables, &record, &outcome);
        tracing::info!(
            table = %current.source.name,
            destination = %current.destination,
            dropped = !statements.is_empty(),
            "source table dropped"
        );
        Ok(())
    }

    /// Maps the table before (from the message, else as known) and after the change.
    async fn map_both(
        &mut self,
        event: &DdlEvent,
        new_state: &TableState,
        current: &Arc<TableMapping>,
    ) -> Result<Mapped, CdcError> {
        let dest_schema = self.relations.dest_schema().to_string();
        let mut types = BTreeMap::new();
        let old_schema = match &event.old {
            Some(old) => {
                let mut ignored = BTreeMap::new();
                old.to_schema(event.oid, self.source, &dest_schema, &mut ignored)
                    .await
                    .ok()
            }
            None => None,
        };
        let new_schema = new_state
            .to_schema(event.oid, self.source, &dest_schema, &mut types)
            .await
            .map_err(RelationError::from)?;
        let mut guard = self.transform.lock().await;
        let (old, old_state) = match old_schema {
            Some(s) => (
                guard
                    .map_table(Arc::new(s), &dest_schema)
                    .map_err(RelationError::from)?,
                event.old.clone(),
            ),
            None => (TableMapping::clone(current), None),
        };
        let new = guard
            .map_table(Arc::new(new_schema), &dest_schema)
            .map_err(RelationError::from)?;
        Ok(Mapped {
            old,
            new: Arc::new(new),
            types: types.into_values().collect(),
            old_state,
        })
    }
}

/// The destination statements that follow one change of a table.
fn change_statements(mapped: &Mapped, new_state: &TableState) -> Vec<String> {
    let (old, new) = (&mapped.old, &mapped.new);
    let moved = |i: usize| moved_column(mapped.old_state.as_ref(), new_state, &old.source, i);
    let existing = |j: usize| new_state.columns.get(j).and_then(|c| c.missing.clone());
    schema_change_sql(
        old,
        new,
        &SourceChange {
            moved: &moved,
            existing_value: &existing,
        },
    )
}

/// Logs what became of a source DDL command; a skipped one leaves the destination table's
/// columns as they were, so its values cross as text from then on (`text_tables`).
pub(super) fn settle_outcome(
    text_tables: &mut HashSet<TableName>,
    record: &DdlRecord<'_>,
    outcome: &DdlOutcome,
) {
    if matches!(outcome, DdlOutcome::Skipped(_)) {
        text_tables.insert(record.dest_table.clone());
    }
    log_outcome(record, outcome);
}

/// Logs what became of a source DDL command.
fn log_outcome(record: &DdlRecord<'_>, outcome: &DdlOutcome) {
    match outcome {
        DdlOutcome::Applied => tracing::info!(
            table = %record.source_table,
            destination = %record.dest_table,
            tag = record.tag,
            statements = ?record.applied,
            "source DDL followed on the destination"
        ),
        DdlOutcome::Skipped(error) => tracing::warn!(
            table = %record.source_table,
            destination = %record.dest_table,
            statement = record.statement,
            error = error.as_str(),
            "source DDL skipped (on_ddl_error = \"skip\"); the destination table stays as it was"
        ),
    }
}

/// Where source column `i` of the old table is in the new one: by attribute number when the
/// message has the old state, else by name.
fn moved_column(
    old_state: Option<&TableState>,
    new_state: &TableState,
    old_source: &TableSchema,
    i: usize,
) -> Option<usize> {
    match old_state {
        Some(old) => new_state.index_of(old.columns.get(i)?.attnum),
        None => {
            let name = &old_source.columns.get(i)?.name;
            new_state.columns.iter().position(|c| &c.name == name)
        }
    }
}
