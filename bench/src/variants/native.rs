//! Variant (a): PostgreSQL's own logical replication.
//!
//! Snapshot: `CREATE SUBSCRIPTION` until every table of `pg_subscription_rel` is `r`eady.
//! CDC: `ALTER SUBSCRIPTION ... DISABLE`, wait for the slot to go inactive, load, `ENABLE`.

use anyhow::{bail, Result};

use super::Replicator;
use crate::pair::Pair;
use crate::report::ProcUsage;
use crate::verify::{self, TableCheck};
use crate::wait::Deadline;
use crate::workload::TABLES;

/// Publication, subscription and slot name.
const NAME: &str = "bench";

/// Destination settings: as many table-sync workers as pgmorph has copy workers, and a
/// short launcher retry interval: with the default 5 s, `ALTER SUBSCRIPTION ... ENABLE` can
/// wait up to 5 s for the apply worker to start, which would be measured as apply time.
pub fn dest_settings(parallel: usize) -> Vec<(&'static str, String)> {
    vec![
        ("wal_retrieve_retry_interval", "100ms".to_owned()),
        ("max_sync_workers_per_subscription", parallel.to_string()),
        (
            "max_logical_replication_workers",
            (parallel + 2).to_string(),
        ),
        ("max_worker_processes", (parallel + 10).to_string()),
    ]
}

/// Native logical replication.
#[derive(Debug, Default)]
pub struct Native;

impl Replicator for Native {
    async fn prepare(&mut self, pair: &Pair) -> Result<()> {
        pair.copy_schema().await?;
        pair.src
            .batch_execute(&format!(
                "CREATE PUBLICATION {NAME} FOR TABLE {}",
                TABLES.join(", ")
            ))
            .await?;
        Ok(())
    }

    async fn snapshot(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()> {
        pair.dst
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION {NAME} CONNECTION '{}' PUBLICATION {NAME}",
                pair.conninfo_of(&pair.source)
            ))
            .await?;
        loop {
            let row = pair
                .dst
                .query_one(
                    "SELECT count(*) FILTER (WHERE srsubstate <> 'r'), count(*) FROM pg_subscription_rel",
                    &[],
                )
                .await?;
            let (pending, total): (i64, i64) = (row.get(0), row.get(1));
            if pending == 0 && total == TABLES.len() as i64 {
                return Ok(());
            }
            self.check(pair).await?;
            deadline.tick().await?;
        }
    }

    async fn pause(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()> {
        pair.dst
            .batch_execute(&format!("ALTER SUBSCRIPTION {NAME} DISABLE"))
            .await?;
        loop {
            let active: Option<bool> = pair
                .src
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&NAME],
                )
                .await?
                .map(|row| row.get(0));
            match active {
                Some(false) => return Ok(()),
                Some(true) => deadline.tick().await?,
                None => bail!("the subscription's replication slot {NAME} is missing"),
            }
        }
    }

    async fn resume(&mut self, pair: &Pair) -> Result<()> {
        pair.dst
            .batch_execute(&format!("ALTER SUBSCRIPTION {NAME} ENABLE"))
            .await?;
        Ok(())
    }

    async fn check(&mut self, pair: &Pair) -> Result<()> {
        let errors: Option<i64> = pair
            .dst
            .query_opt(
                "SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats \
                 WHERE subname = $1",
                &[&NAME],
            )
            .await?
            .map(|row| row.get(0));
        if let Some(n) = errors.filter(|&n| n > 0) {
            bail!(
                "native subscription reported {n} errors; destination log:\n{}",
                pair.dest.log_tail()
            );
        }
        Ok(())
    }

    fn usage(&self) -> Option<ProcUsage> {
        None
    }

    fn checks(&self) -> Vec<TableCheck> {
        verify::full_checks()
    }

    async fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
