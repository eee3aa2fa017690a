//! A table created on the source in a replicated schema (the DDL trigger added it to the
//! publication in the same transaction): its destination table is created, in the destination
//! transaction of that source transaction, and it streams from its creation on.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Cdc, CdcError};
use crate::model::Lsn;
use crate::pipeline::relations::RelationError;
use crate::sink::ddl;
use crate::sink::schema_change::create_table_statements;
use crate::sink::ApplyError;
use crate::source::ddl_event::{DdlEvent, TableState};
use crate::state::ddl_history::{self, DdlRecord};

impl Cdc<'_> {
    /// A new source table: mapped through the transform and created on the destination.
    pub(super) async fn follow_create(
        &mut self,
        event: &DdlEvent,
        state: &TableState,
        lsn: Lsn,
    ) -> Result<(), CdcError> {
        let dest_schema = self.relations.dest_schema().to_string();
        let mut types = BTreeMap::new();
        let schema = state
            .to_schema(event.oid, self.source, &dest_schema, &mut types)
            .await
            .map_err(RelationError::from)?;
        let mapping = self
            .transform
            .lock()
            .await
            .map_table(Arc::new(schema), &dest_schema)
            .map_err(RelationError::from)?;
        let mapping = Arc::new(mapping);
        let statements = if mapping.skip {
            Vec::new()
        } else {
            let refs: Vec<_> = types.values().collect();
            // User types live in the default destination schema (see `catalog::resolve_type`).
            let dest = self.sink.settled().await?;
            ddl::ensure_schema_and_types(dest, &dest_schema, &refs)
                .await
                .map_err(|e| ApplyError::Unusable {
                    table: mapping.destination.to_string(),
                    message: crate::error_chain::one_line(&e),
                })?;
            // A destination table kept from before may have other column types.
            let other = ddl::other_typed_tables(dest, std::slice::from_ref(&mapping)).await;
            self.text_tables.extend(other);
            create_table_statements(&mapping)
        };
        let connector = self.state.name();
        let state_sql = (!mapping.skip).then(|| {
            ddl_history::new_table_sql(connector, &mapping.source.name, &mapping.destination)
        });
        let record = DdlRecord {
            connector,
            lsn: lsn.to_string(),
            source_table: &mapping.source.name,
            dest_table: &mapping.destination,
            tag: &event.tag,
            statement: &event.statement,
            applied: &statements,
        };
        let outcome = self
            .sink
            .apply_source_ddl(&statements, &record, state_sql)
            .await?;
        super::source_ddl::settle_outcome(&mut self.text_tables, &record, &outcome);
        self.state.record_mapping(&mapping).await?;
        tracing::info!(
            table = %mapping.source.name,
            destination = %mapping.destination,
            skipped = mapping.skip,
            "table created on the source follows on the destination"
        );
        self.relations.insert(mapping);
        Ok(())
    }
}
