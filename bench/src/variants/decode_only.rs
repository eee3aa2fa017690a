//! Variant `pgoutput-read`: PostgreSQL's own `pg_recvlogical` reads each CDC backlog through
//! `pgoutput` (protocol 1, text values, what pgmorph and native apply receive) and throws it
//! away. No snapshot and no destination: the walsender plus PostgreSQL's own minimal client
//! (which still writes each message, here to `/dev/null`), nothing applied.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::cli::{VariantKind, Workload};
use crate::pair::Pair;
use crate::report::Measurement;
use crate::workload::{self, LoadState, TABLES};

/// Publication and slot name.
const NAME: &str = "bench_read";

/// Times every CDC backlog of `ctx` read to its end by `pg_recvlogical`.
pub async fn run(pair: &Pair, ctx: &Ctx, run: usize) -> Result<Vec<Measurement>> {
    pair.src
        .batch_execute(&format!(
            "CREATE PUBLICATION {NAME} FOR TABLE {}",
            TABLES.join(", ")
        ))
        .await?;
    pair.src
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{NAME}', 'pgoutput')"
        ))
        .await?;
    let mut state = LoadState::new(&ctx.sizes);
    let mut out = Vec::new();
    for &load in ctx.cdc.iter().filter(|w| measures(**w)) {
        let changes =
            workload::apply_load(load, &pair.source, &pair.src, &ctx.sizes, &mut state).await?;
        let end: String = pair
            .src
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0);
        let started = Instant::now();
        read_to(pair, &end).await.with_context(|| load.label())?;
        let measurement = Measurement {
            run,
            variant: VariantKind::PgoutputRead,
            workload: load,
            secs: started.elapsed().as_secs_f64(),
            units: changes,
            bytes: None,
            usage: None,
            lag: None,
            walsender_cpu: None,
            apply_cpu: None,
        };
        eprintln!("{}", measurement.line());
        out.push(measurement);
    }
    Ok(out)
}

/// Streams the slot into `/dev/null` until `end`, then confirms it (so the next backlog
/// starts after this one).
async fn read_to(pair: &Pair, end: &str) -> Result<()> {
    let output = tokio::process::Command::new(pair.source.bin_dir().join("pg_recvlogical"))
        .args(["-d", &pair.conninfo_of(&pair.source)])
        .args(["-S", NAME, "--start", "--no-loop"])
        .args(["-P", "pgoutput", "-o", "proto_version=1"])
        .args(["-o", &format!("publication_names={NAME}")])
        .args(["-E", end, "-F", "0", "-f", "/dev/null"])
        .output()
        .await
        .context("running pg_recvlogical")?;
    if !output.status.success() {
        bail!(
            "pg_recvlogical failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Whether `load` is one this variant measures (every CDC backlog; the marker-only restart
/// has nothing to read).
fn measures(load: Workload) -> bool {
    !matches!(load, Workload::Snapshot | Workload::Restart)
}
