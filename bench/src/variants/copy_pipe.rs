//! Variant (b): `COPY table TO STDOUT` on the source piped into `COPY table FROM STDIN` on the
//! destination, `parallel` tables at once: the snapshot speed limit of any COPY-based tool.
//! Chunks are gathered into 256 KiB messages, as pgmorph does. No CDC.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};

use super::Ctx;
use crate::cli::{VariantKind, Workload};
use crate::pair::{Pair, SnapshotSize};
use crate::report::Measurement;
use crate::verify;
use crate::workload::TABLES;

/// Bytes gathered before one CopyData message goes to the destination.
const SEND_CHUNK: usize = 256 << 10;

/// Creates the tables, times the copy, verifies.
pub async fn run(
    pair: &Pair,
    ctx: &Ctx,
    run: usize,
    size: SnapshotSize,
) -> Result<Vec<Measurement>> {
    pair.copy_schema().await?;
    let started = Instant::now();
    copy_all(pair, ctx.parallel).await?;
    let measurement = Measurement {
        run,
        variant: VariantKind::Copy,
        workload: Workload::Snapshot,
        secs: started.elapsed().as_secs_f64(),
        units: size.rows,
        bytes: Some(size.bytes),
        usage: None,
        lag: None,
        walsender_cpu: None,
        apply_cpu: None,
    };
    eprintln!("{}", measurement.line());
    verify::compare(
        &pair.src,
        &pair.dst,
        &verify::full_checks(),
        "the COPY pipe",
    )
    .await?;
    Ok(vec![measurement])
}

/// Copies every table with `parallel` workers, largest tables first.
async fn copy_all(pair: &Pair, parallel: usize) -> Result<()> {
    let mut tables: Vec<(i64, String)> = Vec::new();
    for table in TABLES {
        let row = pair
            .src
            .query_one(&format!("SELECT pg_table_size('{table}')"), &[])
            .await?;
        tables.push((row.get(0), (*table).to_owned()));
    }
    tables.sort();
    let queue = Arc::new(Mutex::new(tables));
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let queue = queue.clone();
        let src = pair.source.connect("postgres").await?;
        let dst = pair.dest.connect("postgres").await?;
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some((_, table)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                copy_table(&src, &dst, &table)
                    .await
                    .with_context(|| format!("copying {table}"))?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

async fn copy_table(
    src: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    table: &str,
) -> Result<()> {
    let sink = dst
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    let stream = src.copy_out(&format!("COPY {table} TO STDOUT")).await?;
    futures_util::pin_mut!(stream);
    let mut out = BytesMut::with_capacity(SEND_CHUNK * 2);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() >= SEND_CHUNK {
            sink.send(out.split().freeze()).await?;
        }
    }
    if !out.is_empty() {
        sink.send(out.split().freeze()).await?;
    }
    sink.finish().await?;
    Ok(())
}
