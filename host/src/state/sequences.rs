//! What sequence syncs need from the state and what they leave there: the mapped columns (from
//! the attribute view) and the last sync's time and count (`pgmorph.sequence_syncs`).

use std::collections::HashMap;

use tokio_postgres::Client;

use super::{StateError, StateStore};

/// By source `(table, column)`: the destination table and column it maps to.
pub type MappedColumns = HashMap<(String, String), (String, String)>;

/// The last sequence sync of a connector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SequenceSync {
    /// When it ran (`timestamptz` text).
    pub synced_at: String,
    /// How many sequences it set.
    pub sequences: i32,
}

impl StateStore {
    /// The mapped columns of the tables the connector replicates (skipped tables and dropped
    /// columns left out).
    pub async fn mapped_columns(&self) -> Result<MappedColumns, StateError> {
        let rows = self
            .client
            .query(
                "SELECT source_table, source_column, dest_table, dest_column FROM pgmorph.attributes \
                 WHERE connector = $1 AND dest_table IS NOT NULL AND source_column IS NOT NULL \
                   AND dest_column IS NOT NULL",
                &[&self.name],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
            .collect())
    }

    /// The default destination schema recorded by the first start, if any.
    pub async fn dest_schema(&self) -> Result<Option<String>, StateError> {
        Ok(self
            .client
            .query_opt(
                "SELECT dest_schema FROM pgmorph.state WHERE name = $1",
                &[&self.name],
            )
            .await?
            .and_then(|r| r.get(0)))
    }

    /// Records a sequence sync that set `count` sequences.
    pub async fn record_sequence_sync(&self, count: usize) -> Result<(), StateError> {
        let count = count as i32;
        self.client
            .execute(
                "INSERT INTO pgmorph.sequence_syncs (connector, synced_at, sequences) \
                 VALUES ($1, now(), $2) ON CONFLICT (connector) \
                 DO UPDATE SET synced_at = now(), sequences = EXCLUDED.sequences",
                &[&self.name, &count],
            )
            .await?;
        Ok(())
    }
}

/// The connector's last sequence sync, if one ran.
pub async fn last_sequence_sync(
    client: &Client,
    name: &str,
) -> Result<Option<SequenceSync>, StateError> {
    let row = client
        .query_opt(
            "SELECT synced_at::text, sequences FROM pgmorph.sequence_syncs WHERE connector = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| SequenceSync {
        synced_at: r.get(0),
        sequences: r.get(1),
    }))
}
