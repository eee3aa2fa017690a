//! At start, bringing destination tables in line with mappings that changed while the connector
//! was stopped (plugins or their config edited, e.g. after a `schemasync` review): renames and
//! type changes are applied in place, tables that cannot follow are copied again.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use super::connector::RunError;
use crate::model::{MappedColumn, TableMapping, TableName};
use crate::sink::ddl;
use crate::state::StateStore;

/// Reads the mappings recorded by the previous run (the attribute view), by source table.
pub async fn previous_mappings(
    state: &StateStore,
    current: &[Arc<TableMapping>],
) -> Result<HashMap<String, TableMapping>, RunError> {
    let rows = state
        .client()
        .query(
            "SELECT source_table, dest_table, source_column, dest_column, dest_type \
             FROM pgmorph.attributes WHERE connector = $1 ORDER BY source_table, attnum",
            &[&state.name()],
        )
        .await
        .map_err(crate::state::StateError::from)?;
    let mut out: HashMap<String, TableMapping> = HashMap::new();
    for r in rows {
        let source_table: String = r.get(0);
        let Some(now) = current
            .iter()
            .find(|m| m.source.name.to_string() == source_table)
        else {
            continue;
        };
        let dest_table: Option<String> = r.get(1);
        let entry = out.entry(source_table).or_insert_with(|| TableMapping {
            source: now.source.clone(),
            destination: dest_table
                .as_deref()
                .map(|d| TableName::parse(d, &now.destination.schema))
                .unwrap_or_else(|| now.destination.clone()),
            columns: Vec::new(),
            skip: dest_table.is_none(),
            transforms_rows: false,
        });
        let source_column: Option<String> = r.get(2);
        let (Some(name), Some(type_sql)) =
            (r.get::<_, Option<String>>(3), r.get::<_, Option<String>>(4))
        else {
            continue;
        };
        entry.columns.push(MappedColumn {
            source_index: source_column
                .and_then(|s| now.source.columns.iter().position(|c| c.name == s)),
            name,
            type_sql,
            not_null: true,
            is_key: false,
            changed_by: Vec::new(),
        });
    }
    Ok(out)
}

/// Applies the differences between the previous and the current mappings to existing
/// destination tables; returns the tables that must be copied again.
pub async fn align(
    dest: &Client,
    previous: &HashMap<String, TableMapping>,
    current: &[Arc<TableMapping>],
) -> Result<Vec<Arc<TableMapping>>, RunError> {
    let mut recopy = Vec::new();
    for m in current.iter().filter(|m| !m.skip) {
        let Some(old) = previous.get(&m.source.name.to_string()) else {
            continue;
        };
        if ddl::destination_columns(dest, old)
            .await
            .map_err(|source| ddl::DdlError::Statement {
                what: format!("table {}", old.destination),
                source,
            })?
            .is_empty()
        {
            continue; // nothing on the destination yet
        }
        let change = ddl::mapping_change(old, m);
        if change.needs_copy {
            recopy.push(m.clone());
            continue;
        }
        if change.statements.is_empty() {
            continue;
        }
        match dest
            .batch_execute(&ddl::in_transaction(&change.statements))
            .await
        {
            Ok(()) => tracing::info!(
                table = %m.destination,
                statements = ?change.statements,
                "destination table brought in line with the changed mapping"
            ),
            Err(e) => {
                let _ = dest.batch_execute("ROLLBACK").await;
                tracing::warn!(
                    table = %old.destination,
                    error = %crate::error_chain::one_line(&e),
                    "the mapping change cannot be applied in place; the table is built and copied again"
                );
                dest.batch_execute(&format!(
                    "DROP TABLE IF EXISTS {}",
                    old.destination.quoted()
                ))
                .await
                .map_err(|source| ddl::DdlError::Statement {
                    what: format!("table {}", old.destination),
                    source,
                })?;
                recopy.push(m.clone());
            }
        }
    }
    Ok(recopy)
}
