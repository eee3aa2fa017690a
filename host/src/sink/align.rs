//! At start, bringing destination tables in line with mappings that changed while the connector
//! was stopped (plugins or their config edited, e.g. after a `schemasync` review): renames and
//! type changes are applied in place, tables that cannot follow are copied again.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use super::ddl::{destination_columns, in_transaction, mapping_change, DdlError};
use crate::model::TableMapping;

/// Whether a table's source columns (name, type) are the ones recorded with its previous
/// mapping: only then is a difference between the mappings the plugins' doing.
pub fn source_unchanged(recorded: Option<&Vec<(String, String)>>, current: &TableMapping) -> bool {
    let now = current
        .source
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_sql.as_str()));
    recorded.is_some_and(|r| r.iter().map(|(n, t)| (n.as_str(), t.as_str())).eq(now))
}

/// Applies the differences between the previous and the current mappings to existing
/// destination tables; returns the tables that must be copied again.
pub async fn align(
    dest: &Client,
    previous: &HashMap<String, TableMapping>,
    current: &[Arc<TableMapping>],
) -> Result<Vec<Arc<TableMapping>>, DdlError> {
    let mut recopy = Vec::new();
    for m in current.iter().filter(|m| !m.skip) {
        let Some(old) = previous.get(&m.source.name.to_string()) else {
            continue;
        };
        if destination_columns(dest, old)
            .await
            .map_err(|source| DdlError::Statement {
                what: format!("table {}", old.destination),
                source,
            })?
            .is_empty()
        {
            continue; // nothing on the destination yet
        }
        let change = mapping_change(old, m);
        if change.needs_copy {
            recopy.push(m.clone());
            continue;
        }
        if change.statements.is_empty() {
            continue;
        }
        match dest
            .batch_execute(&in_transaction(&change.statements))
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
                .map_err(|source| DdlError::Statement {
                    what: format!("table {}", old.destination),
                    source,
                })?;
                recopy.push(m.clone());
            }
        }
    }
    Ok(recopy)
}
