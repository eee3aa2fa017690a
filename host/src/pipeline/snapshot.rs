//! The initial copy: every selected table read under the slot's exported snapshot and written
//! with COPY, several tables at once, each in its own destination transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;

use super::transform::Transform;
use crate::config::ConnectionSettings;
use crate::copy_text::{self, LineSplitter};
use crate::model::{Cell, Op, RowChange, TableMapping};
use crate::source::copy_out;
use crate::state::StateStore;

/// Bytes gathered before one CopyData message is sent to the destination.
const SEND_CHUNK: usize = 256 << 10;
/// Rows handed to the row step at once.
const ROW_BATCH: usize = 1000;

/// The snapshot failed; the next start redoes it.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the source failed.
    #[error("snapshot of {table}: {source}")]
    Source {
        /// Source table.
        table: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// Writing the destination failed.
    #[error("snapshot of {table} into the destination: {source}")]
    Destination {
        /// Source table.
        table: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// A row could not be parsed or transformed.
    #[error("snapshot of {table}: {message}")]
    Row {
        /// Source table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// Opening a snapshot reader failed.
    #[error(transparent)]
    Open(#[from] copy_out::CopyOutError),
    /// Recording progress failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Everything the copy workers share.
pub struct SnapshotJob {
    /// Source connection settings.
    pub source: ConnectionSettings,
    /// Destination connection settings.
    pub destination: ConnectionSettings,
    /// The exported snapshot name.
    pub snapshot_name: String,
    /// Tables to copy.
    pub tables: Vec<Arc<TableMapping>>,
    /// Workers (tables copied at once).
    pub parallel: usize,
    /// The row transform, for tables whose rows it changes.
    pub transform: Arc<Mutex<Box<dyn Transform>>>,
    /// The state store.
    pub state: Arc<StateStore>,
    /// Apply with `synchronous_commit=off`.
    pub async_commit: bool,
    /// The stream position the snapshot corresponds to (recorded per table).
    pub sync_lsn: crate::model::Lsn,
}

/// Copies every table; returns the number of rows written.
pub async fn copy_all(job: SnapshotJob) -> Result<u64, SnapshotError> {
    let job = Arc::new(job);
    let queue = Arc::new(std::sync::Mutex::new(job.tables.clone()));
    let workers = job.parallel.min(job.tables.len()).max(1);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let job = job.clone();
        let queue = queue.clone();
        handles.push(tokio::spawn(async move {
            let reader = copy_out::open_reader(&job.source, &job.snapshot_name).await?;
            let dest = job
                .destination
                .connect("pgmorph snapshot")
                .await
                .map_err(|source| SnapshotError::Destination {
                    table: "(connect)".into(),
                    source,
                })?;
            if job.async_commit {
                let _ = dest.batch_execute("SET synchronous_commit = off").await;
            }
            let mut rows = 0;
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some(mapping) = next else { break };
                rows += copy_table(&job, &reader, &dest, &mapping).await?;
            }
            Ok::<u64, SnapshotError>(rows)
        }));
    }
    let mut total = 0;
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(SnapshotError::Row {
                    table: "(worker)".into(),
                    message: join.to_string(),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

async fn copy_table(
    job: &SnapshotJob,
    reader: &tokio_postgres::Client,
    dest: &tokio_postgres::Client,
    mapping: &Arc<TableMapping>,
) -> Result<u64, SnapshotError> {
    let table = mapping.source.name.to_string();
    let src_err = |source| SnapshotError::Source {
        table: table.clone(),
        source,
    };
    let dst_err = |source| SnapshotError::Destination {
        table: table.clone(),
        source,
    };
    let started = Instant::now();
    job.state
        .set_table_phase(&table, "copying", Some(0))
        .await?;
    tracing::info!(table = %table, destination = %mapping.destination, "snapshot copy started");

    dest.batch_execute(&format!("BEGIN; TRUNCATE {}", mapping.destination.quoted()))
        .await
        .map_err(dst_err)?;
    let cols: Vec<String> = mapping
        .columns
        .iter()
        .map(|c| crate::model::quote_ident(&c.name))
        .collect();
    let binary = copy_out::binary_safe(mapping);
    let sink = dest
        .copy_in::<_, Bytes>(&format!(
            "COPY {} ({}) FROM STDIN{}",
            mapping.destination.quoted(),
            cols.join(", "),
            if binary { " (FORMAT binary)" } else { "" }
        ))
        .await
        .map_err(dst_err)?;
    futures_util::pin_mut!(sink);
    let stream = copy_out::copy_table(reader, mapping, binary)
        .await
        .map_err(|e| SnapshotError::Row {
            table: table.clone(),
            message: e.to_string(),
        })?;
    futures_util::pin_mut!(stream);

    let mut rows: u64 = 0;
    let mut out = BytesMut::with_capacity(SEND_CHUNK * 2);
    let mut last_report = Instant::now();
    let mut row_path = mapping
        .transforms_rows
        .then(|| RowPath::new(mapping.clone()));
    let mut dead_letters = Vec::new();
    let mut skipped = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(src_err)?;
        match row_path.as_mut() {
            None => {
                // Progress only: the exact count comes from the destination at the end.
                rows += if binary {
                    1
                } else {
                    chunk.iter().filter(|&&b| b == b'\n').count() as u64
                };
                out.extend_from_slice(&chunk);
            }
            Some(path) => {
                path.feed(&chunk)?;
                if path.batch.len() >= ROW_BATCH {
                    let (n, s, d) = path.run(&job.transform, &mut out).await?;
                    rows += n;
                    skipped += s;
                    dead_letters.extend(d);
                }
            }
        }
        if out.len() >= SEND_CHUNK {
            sink.send(out.split().freeze()).await.map_err(dst_err)?;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            tracing::info!(table = %table, rows, "snapshot copy in progress");
        }
    }
    if let Some(path) = row_path.as_mut() {
        let (n, s, d) = path.run(&job.transform, &mut out).await?;
        rows += n;
        skipped += s;
        dead_letters.extend(d);
    }
    if !out.is_empty() {
        sink.send(out.split().freeze()).await.map_err(dst_err)?;
    }
    let written = sink.finish().await.map_err(dst_err)?;
    if row_path.is_none() {
        rows = written;
    }
    for d in &dead_letters {
        dest.execute(
            "INSERT INTO pgmorph.dead_letters (connector, source_table, op, lsn, plugin, error, row_data) \
             SELECT s.name, $2, 'snapshot', '0/0', $3, $4, $5::text::jsonb FROM pgmorph.state s WHERE s.name = $1",
            &[&job.state_name(), &table, &d.plugin, &d.error, &d.row.to_string()],
        )
        .await
        .map_err(dst_err)?;
    }
    let rows_text = rows.to_string();
    let sync_text = job.sync_lsn.to_string();
    dest.execute(
        crate::state::store_sql::TABLE_COPIED,
        &[&job.state_name(), &table, &rows_text, &sync_text],
    )
    .await
    .map_err(dst_err)?;
    dest.batch_execute("COMMIT").await.map_err(dst_err)?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        table = %table,
        rows,
        skipped,
        dead_lettered = dead_letters.len(),
        seconds = format!("{secs:.2}"),
        rows_per_sec = (rows as f64 / secs.max(1e-6)) as u64,
        "snapshot copy finished"
    );
    Ok(rows)
}

impl SnapshotJob {
    fn state_name(&self) -> String {
        self.state.name().to_string()
    }
}

/// Rows of a table whose rows the transform changes: parsed, transformed, re-encoded.
struct RowPath {
    mapping: Arc<TableMapping>,
    splitter: LineSplitter,
    batch: Vec<RowChange>,
}

impl RowPath {
    fn new(mapping: Arc<TableMapping>) -> Self {
        Self {
            mapping,
            splitter: LineSplitter::default(),
            batch: Vec::with_capacity(ROW_BATCH),
        }
    }

    fn feed(&mut self, chunk: &Bytes) -> Result<(), SnapshotError> {
        let mapping = &self.mapping;
        let batch = &mut self.batch;
        self.splitter.feed(chunk, |line| {
            let values = copy_text::decode_line(line).map_err(|e| SnapshotError::Row {
                table: mapping.source.name.to_string(),
                message: e.to_string(),
            })?;
            // COPY read only source-fed columns; computed ones start as NULL.
            let mut values = values.into_iter();
            let row = mapping
                .columns
                .iter()
                .map(|c| match c.source_index {
                    Some(_) => values.next().unwrap_or(Cell::Null),
                    None => Cell::Null,
                })
                .collect();
            batch.push(RowChange {
                op: Op::Snapshot,
                old: None,
                new: Some(row),
            });
            Ok(())
        })
    }

    async fn run(
        &mut self,
        transform: &Mutex<Box<dyn Transform>>,
        out: &mut BytesMut,
    ) -> Result<(u64, u64, Vec<super::transform::DeadLetter>), SnapshotError> {
        if self.batch.is_empty() {
            return Ok((0, 0, Vec::new()));
        }
        let outcome = transform
            .lock()
            .await
            .transform_rows(&self.mapping, &mut self.batch)
            .map_err(|e| SnapshotError::Row {
                table: self.mapping.source.name.to_string(),
                message: e.to_string(),
            })?;
        let n = self.batch.len() as u64;
        for change in self.batch.drain(..) {
            if let Some(row) = change.new {
                copy_text::encode_row(out, &row);
            }
        }
        Ok((n, outcome.skipped, outcome.dead_letters))
    }
}
