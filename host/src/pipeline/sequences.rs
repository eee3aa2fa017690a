//! Copying sequence values to the destination, at the end of the snapshot and on demand
//! (`pgmorph sync-sequences`): the sequences of the replicated schemas and those owned by a
//! replicated table's column. An owned sequence follows its column through the mapping (a
//! renamed table's sequence lands beside it, as the one its column owns there); any other keeps
//! its name in the default destination schema.

use std::collections::BTreeSet;

use crate::config::{Config, ConnectionError};
use crate::model::{SequenceTarget, TableName};
use crate::sink;
use crate::source::sequences::{self as source_sequences, SourceSequence};
use crate::state::sequences::MappedColumns;
use crate::state::{StateError, StateStore};

/// Sequences could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// The connection settings are unusable.
    #[error(transparent)]
    Settings(#[from] ConnectionError),
    /// Reading the source failed.
    #[error("reading the source's sequences failed: {0}")]
    Source(tokio_postgres::Error),
    /// The destination refused a sequence.
    #[error("setting sequence {sequence} on the destination failed: {source}")]
    Destination {
        /// The destination sequence.
        sequence: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// The state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Where a source sequence lands: beside the destination column its owner column maps to, or
/// under its own name in `dest_schema`.
pub fn plan(seq: SourceSequence, mapped: &MappedColumns, dest_schema: &str) -> SequenceTarget {
    let owned = seq.owner.as_ref().and_then(|(table, column)| {
        let (dest_table, dest_column) = mapped.get(&(table.to_string(), column.clone()))?;
        let dest_table = TableName::parse(dest_table, dest_schema);
        let name = match seq.name.name == source_sequences::default_name(&table.name, column) {
            true => source_sequences::default_name(&dest_table.name, dest_column),
            false => seq.name.name.clone(),
        };
        let dest = TableName::new(dest_table.schema.clone(), name);
        Some((dest, (dest_table, dest_column.clone())))
    });
    let (dest, column) = match owned {
        Some((dest, column)) => (dest, Some(column)),
        None => (TableName::new(dest_schema, seq.name.name.clone()), None),
    };
    SequenceTarget {
        source: seq.name,
        dest,
        column,
        definition: seq.definition,
        last_value: seq.last_value,
        is_called: seq.is_called,
    }
}

/// Sets every sequence of the replicated tables' schemas on the destination and records the
/// sync; returns how many were set.
pub async fn sync(
    source: &tokio_postgres::Client,
    state: &StateStore,
    dest_schema: &str,
) -> Result<usize, SequenceError> {
    let mapped = state.mapped_columns().await?;
    let tables: BTreeSet<String> = mapped.keys().map(|(t, _)| t.clone()).collect();
    let schemas: BTreeSet<String> = tables
        .iter()
        .map(|t| TableName::parse(t, "public").schema)
        .collect();
    let (tables, schemas): (Vec<String>, Vec<String>) =
        (tables.into_iter().collect(), schemas.into_iter().collect());
    let found = source_sequences::read(source, &schemas, &tables)
        .await
        .map_err(SequenceError::Source)?;
    let mut count = 0;
    for seq in found {
        let target = plan(seq, &mapped, dest_schema);
        let set = sink::sequences::apply(state.client(), &target)
            .await
            .map_err(|source| SequenceError::Destination {
                sequence: target.dest.to_string(),
                source,
            })?;
        match set {
            Some(dest) => {
                tracing::debug!(source = %target.source, destination = %dest, value = target.last_value, "sequence synced");
                count += 1;
            }
            None => {
                tracing::warn!(source = %target.source, "the table of the sequence's column is missing on the destination: sequence not synced")
            }
        }
    }
    state.record_sequence_sync(count).await?;
    tracing::info!(sequences = count, "sequences synced");
    Ok(count)
}

/// `pgmorph sync-sequences`: connects to both servers and runs [`sync`].
pub async fn sync_config(config: &Config) -> Result<usize, SequenceError> {
    let source_settings = config.source_connection()?;
    let source = source_settings
        .connect("pgmorph sequences")
        .await
        .map_err(SequenceError::Source)?;
    let dest = config
        .destination_connection()?
        .connect("pgmorph sequences")
        .await
        .map_err(StateError::from)?;
    let state = StateStore::open(dest, &config.name).await?;
    let dest_schema = match state.dest_schema().await? {
        Some(schema) => schema,
        None => config.dest_schema(&source_settings.dbname),
    };
    sync(&source, &state, &dest_schema).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(name: &str, owner: Option<(&str, &str)>) -> SourceSequence {
        SourceSequence {
            name: TableName::new("public", name),
            owner: owner.map(|(t, c)| (TableName::new("public", t), c.to_string())),
            definition: "AS bigint".into(),
            last_value: 42,
            is_called: true,
        }
    }

    #[test]
    fn an_owned_sequence_follows_its_column_and_others_keep_their_name() {
        let mapped: MappedColumns = [(
            ("public.orders".to_string(), "id".to_string()),
            ("sales.orders_v2".to_string(), "order_id".to_string()),
        )]
        .into_iter()
        .collect();
        let renamed = plan(seq("orders_id_seq", Some(("orders", "id"))), &mapped, "dst");
        assert_eq!(
            renamed.dest,
            TableName::new("sales", "orders_v2_order_id_seq")
        );
        assert_eq!(
            renamed.column,
            Some((TableName::new("sales", "orders_v2"), "order_id".into()))
        );
        let custom = plan(seq("order_numbers", Some(("orders", "id"))), &mapped, "dst");
        assert_eq!(custom.dest, TableName::new("sales", "order_numbers"));
        let free = plan(seq("invoice_numbers", None), &mapped, "dst");
        assert_eq!(free.dest, TableName::new("dst", "invoice_numbers"));
        assert_eq!(free.column, None);
        let unmapped = plan(seq("other_id_seq", Some(("other", "id"))), &mapped, "dst");
        assert_eq!(unmapped.dest, TableName::new("dst", "other_id_seq"));
        assert_eq!((unmapped.last_value, unmapped.is_called), (42, true));
    }
}
