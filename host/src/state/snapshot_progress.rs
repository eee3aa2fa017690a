//! The running snapshot's progress per table (`pgmorph.snapshot_progress`), written about once
//! a second while tables are copied, so `pgmorph status` shows it from another process.

use tokio_postgres::Client;

use super::StateError;
use crate::model::CopyFigures;

/// Forgets the progress of an earlier snapshot (a new one starts, or the connector is reset).
pub async fn clear(client: &Client, connector: &str) -> Result<(), StateError> {
    if !exists(client).await? {
        return Ok(());
    }
    client
        .execute(
            "DELETE FROM pgmorph.snapshot_progress WHERE connector = $1",
            &[&connector],
        )
        .await?;
    Ok(())
}

/// Records the figures of the tables being copied, in one statement.
pub async fn record(
    client: &Client,
    connector: &str,
    tables: &[(String, CopyFigures)],
) -> Result<(), StateError> {
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    let int = |f: fn(&CopyFigures) -> u64| -> Vec<i64> {
        tables.iter().map(|(_, t)| f(t) as i64).collect()
    };
    let est_rows: Vec<Option<i64>> = tables
        .iter()
        .map(|(_, t)| t.est_rows.map(|e| e as i64))
        .collect();
    let seconds: Vec<f64> = tables.iter().map(|(_, t)| t.seconds).collect();
    let done: Vec<bool> = tables.iter().map(|(_, t)| t.done).collect();
    client
        .execute(
            "INSERT INTO pgmorph.snapshot_progress \
               (connector, source_table, rows, est_rows, bytes, est_bytes, seconds, done) \
             SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], \
                                      $7::float8[], $8::bool[]) \
             ON CONFLICT (connector, source_table) DO UPDATE SET rows = EXCLUDED.rows, \
               est_rows = EXCLUDED.est_rows, bytes = EXCLUDED.bytes, est_bytes = EXCLUDED.est_bytes, \
               seconds = EXCLUDED.seconds, done = EXCLUDED.done, updated_at = now()",
            &[
                &connector,
                &names,
                &int(|t| t.rows),
                &est_rows,
                &int(|t| t.bytes),
                &int(|t| t.est_bytes),
                &seconds,
                &done,
            ],
        )
        .await?;
    Ok(())
}

/// The last recorded progress of the connector's snapshot, by source table (empty when none
/// was recorded, or the state tables predate it).
pub async fn read(
    client: &Client,
    connector: &str,
) -> Result<Vec<(String, CopyFigures)>, StateError> {
    if !exists(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT source_table, rows, est_rows, bytes, est_bytes, seconds, done \
             FROM pgmorph.snapshot_progress WHERE connector = $1 ORDER BY source_table",
            &[&connector],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let figures = CopyFigures {
                rows: r.get::<_, i64>(1).max(0) as u64,
                est_rows: r.get::<_, Option<i64>>(2).map(|e| e.max(0) as u64),
                bytes: r.get::<_, i64>(3).max(0) as u64,
                est_bytes: r.get::<_, i64>(4).max(0) as u64,
                seconds: r.get(5),
                done: r.get(6),
            };
            (r.get(0), figures)
        })
        .collect())
}

/// Whether the table exists (state tables written by an older version have none).
async fn exists(client: &Client) -> Result<bool, StateError> {
    Ok(client
        .query_one(
            "SELECT to_regclass('pgmorph.snapshot_progress') IS NOT NULL",
            &[],
        )
        .await?
        .get(0))
}
