//! The initial copy: every selected table read under the slot's exported snapshot and written
//! with COPY, several tables at once, each in its own destination transaction; a big table is
//! split into page ranges copied at once, each range in its own destination transaction
//! (`range_copy`), and rows that plugins change take the row path (`row_path`), through the
//! worker's own plugin instances (`worker_plugins`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::OnceCell;

mod partitioned;
mod progress;
mod range_copy;
mod row_path;

use super::worker_plugins::WorkerPlugins;
use progress::{Reporter, TableProgress};
use range_copy::RangeCtx;
use row_path::RowPath;

use crate::config::ConnectionSettings;
use crate::model::TableMapping;
use crate::model::{PageRange, RangePolicy, SourceIndex};
use crate::sink::load::{Into, Loader};
use crate::source::copy_out::{self, RowFilter};
use crate::source::estimates;
use crate::source::indexes as source_indexes;
use crate::source::partitions;
use crate::source::ranges;
use crate::state::{CopiedRange, StateStore};
use crate::transform::SharedTransform;

/// Bytes gathered before one CopyData message is sent to the destination.
const SEND_CHUNK: usize = 256 << 10;
/// The last message of a binary COPY: a field count of -1.
const BINARY_TRAILER: &[u8] = &[0xff, 0xff];
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
    /// Workers (tables and page ranges copied at once).
    pub parallel: usize,
    /// How big tables are split into page ranges.
    pub ranges: RangePolicy,
    /// Create the source's secondary indexes on tables pgmorph created, after their copy.
    pub indexes: bool,
    /// The row transform, for tables whose rows it changes.
    pub transform: SharedTransform,
    /// The state store.
    pub state: Arc<StateStore>,
    /// Apply with `synchronous_commit=off`.
    pub async_commit: bool,
    /// The stream position the snapshot corresponds to (recorded per table).
    pub sync_lsn: crate::model::Lsn,
    /// When the snapshot was taken, microseconds since the Unix epoch: what plugins' clocks
    /// read for snapshot rows.
    pub time_us: i64,
    /// Split tables whose interrupted copy resumes: the page ranges already copied.
    pub resume: Resume,
    /// The publication's row filters: a table's copy reads only the rows its filter selects,
    /// as the stream sends only those.
    pub row_filters: crate::config::RowFilters,
    /// Destination tables that take text although their mapping allows binary COPY
    /// ([`crate::sink::ddl::other_typed_tables`]).
    pub text_tables: std::collections::HashSet<crate::model::TableName>,
}

impl SnapshotJob {
    /// Whether the table's rows cross in COPY's binary format.
    pub fn binary(&self, mapping: &TableMapping) -> bool {
        mapping.binary_safe() && !self.text_tables.contains(&mapping.destination)
    }
}

/// By source table: the page ranges an interrupted copy already wrote.
pub type Resume = HashMap<String, Vec<CopiedRange>>;

/// Whether a table's interrupted copy can resume by page range: rows reach the destination
/// unchanged by plugins (so a key read on the source is the key on the destination) and are
/// identified by a primary key fed from the source. The destination must also have a unique
/// index on those columns (checked by the caller).
pub fn resumable(mapping: &TableMapping) -> bool {
    let mut keys = mapping.columns.iter().filter(|c| c.is_key).peekable();
    !mapping.transforms_rows
        && !mapping.skip
        && mapping.source.has_primary_key
        && keys.peek().is_some()
        && keys.all(|c| c.source_index.is_some())
}

/// A unit of copy work on one table.
#[derive(Debug, Clone)]
enum Unit {
    /// The whole table, in one transaction.
    Whole,
    /// One page range, copied into the emptied table.
    Range(PageRange),
    /// A page range an interrupted copy did not reach, and the oldest snapshot the copied
    /// ranges were read under: rows that snapshot saw are copied (they cannot be on the
    /// destination: a row version stays on its page), rows written since are merged by key
    /// (one may be there already, having moved from a copied range).
    Merge(PageRange, String),
    /// A page range copied before the interruption, under the given snapshot: the rows
    /// written since merged by key.
    Refresh(PageRange, String),
    /// The end of a resumed copy: destination rows whose key the source no longer has
    /// (deleted since the interrupted copy) removed.
    SyncKeys,
    /// One page range of one leaf partition of a partitioned table.
    Leaf(crate::model::TableName, PageRange),
}

/// One table's copy, shared by the workers copying its ranges.
struct TableCopy {
    mapping: Arc<TableMapping>,
    /// Source table name.
    name: String,
    /// How many units of work the table's copy takes (1: copied whole).
    ranges: usize,
    /// Resuming an interrupted copy: the table is not emptied first.
    resume: bool,
    /// The source's secondary indexes.
    indexes: Vec<SourceIndex>,
    /// Set once the destination table is emptied and the copy recorded as started.
    started: OnceCell<Instant>,
    /// Ranges not finished yet.
    remaining: AtomicUsize,
    rows: AtomicU64,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
    /// Rows and bytes read so far, against the catalog's estimate.
    progress: Arc<TableProgress>,
}

/// One unit of work: a table, or one page range of it.
type Item = (Arc<TableCopy>, Unit);

/// Copies every table; returns the number of rows written. Big tables are split into page
/// ranges; workers take tables and ranges from one queue, biggest tables first.
pub async fn copy_all(job: SnapshotJob) -> Result<u64, SnapshotError> {
    let job = Arc::new(job);
    let items = plan(&job).await?;
    let mut tables: Vec<Arc<TableProgress>> =
        items.iter().map(|(t, _)| t.progress.clone()).collect();
    tables.dedup_by(|a, b| Arc::ptr_eq(a, b));
    let reporter = Reporter::spawn(tables, job.state.clone());
    let workers = job.parallel.min(items.len()).max(1);
    let queue = Arc::new(std::sync::Mutex::new(items));
    let failed = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(workers);
    for worker in 0..workers {
        let job = job.clone();
        let queue = queue.clone();
        let failed = failed.clone();
        handles.push(tokio::spawn(async move {
            let result = work(worker, &job, &queue, &failed).await;
            if result.is_err() {
                // The others stop after their current item.
                failed.store(true, Ordering::Relaxed);
            }
            result
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
    reporter.finish().await;
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Sizes the tables, splits the big ones into ranges and reads their indexes; returns the
/// work queue.
async fn plan(job: &SnapshotJob) -> Result<VecDeque<Item>, SnapshotError> {
    let client = job
        .source
        .connect("pgmorph snapshot plan")
        .await
        .map_err(|source| SnapshotError::Source {
            table: "(connect)".into(),
            source,
        })?;
    let splits =
        ranges::supports_ranges(&client)
            .await
            .map_err(|source| SnapshotError::Source {
                table: "(version)".into(),
                source,
            })?;
    let mut tables = Vec::with_capacity(job.tables.len());
    for mapping in &job.tables {
        let name = mapping.source.name.to_string();
        let src_err = |source| SnapshotError::Source {
            table: name.clone(),
            source,
        };
        let mut size = ranges::table_size(&client, mapping.source.oid)
            .await
            .map_err(src_err)?;
        let estimate = estimates::estimate(&client, mapping.source.oid)
            .await
            .map_err(src_err)?;
        let leaves = partitions::leaves(&client, mapping.source.oid)
            .await
            .map_err(src_err)?;
        let planned: Vec<Unit> = match (leaves, job.resume.get(&name)) {
            (Some(leaves), _) => {
                let root = &mapping.source.name;
                let (pages, units) = partitioned::plan(&client, root, leaves, splits, &job.ranges)
                    .await
                    .map_err(src_err)?;
                size.pages = pages;
                units
            }
            (None, Some(done)) => {
                let done_ranges: Vec<PageRange> = done.iter().map(|c| c.range).collect();
                let oldest = copy_out::oldest_snapshot(done.iter().map(|c| c.snapshot.as_str()))
                    .unwrap_or_default()
                    .to_owned();
                let mut units: Vec<Unit> = ranges::gaps(&done_ranges)
                    .into_iter()
                    .map(|r| Unit::Merge(r, oldest.clone()))
                    .collect();
                tracing::info!(
                    table = %name,
                    copied = done.len(),
                    left = units.len(),
                    "resuming an interrupted copy: page ranges already copied are refreshed, not copied again"
                );
                units.extend(
                    done.iter()
                        .map(|c| Unit::Refresh(c.range, c.snapshot.clone())),
                );
                units.push(Unit::SyncKeys);
                units
            }
            (None, None) => {
                let planned = if splits {
                    ranges::plan(size, &job.ranges)
                } else {
                    vec![PageRange::WHOLE]
                };
                if planned.len() == 1 {
                    vec![Unit::Whole]
                } else {
                    planned.into_iter().map(Unit::Range).collect()
                }
            }
        };
        let indexes = if job.indexes {
            source_indexes::read(&client, &mapping.source)
                .await
                .map_err(src_err)?
        } else {
            Vec::new()
        };
        if matches!(planned[0], Unit::Range(_)) {
            tracing::info!(
                table = %name,
                mb = size.bytes() >> 20,
                ranges = planned.len(),
                "table split into page ranges"
            );
        }
        let copy = Arc::new(TableCopy {
            mapping: mapping.clone(),
            name: name.clone(),
            ranges: planned.len(),
            resume: job.resume.contains_key(&name) && !matches!(planned[0], Unit::Leaf(..)),
            indexes,
            started: OnceCell::new(),
            remaining: AtomicUsize::new(planned.len()),
            rows: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            progress: Arc::new(TableProgress::new(name.clone(), estimate)),
        });
        tables.push((size.pages, copy, planned));
    }
    // Biggest first, so that small tables fill the gaps at the end.
    tables.sort_by_key(|(pages, _, _)| std::cmp::Reverse(*pages));
    crate::metrics::snapshot_started(tables.len());
    Ok(tables
        .into_iter()
        .flat_map(|(_, copy, planned)| planned.into_iter().map(move |r| (copy.clone(), r)))
        .collect())
}

/// One worker: its own snapshot reader, destination connection and plugin instances, taking
/// items until the queue is empty or another worker failed.
async fn work(
    worker: usize,
    job: &SnapshotJob,
    queue: &std::sync::Mutex<VecDeque<Item>>,
    failed: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let reader = copy_out::open_reader(&job.source, &job.snapshot_name).await?;
    let snapshot = copy_out::reader_snapshot(&reader).await?;
    let dest = Loader::connect(&job.destination, job.state.name(), job.async_commit)
        .await
        .map_err(|source| SnapshotError::Destination {
            table: "(connect)".into(),
            source,
        })?;
    let mut plugins = WorkerPlugins::new("snapshot", worker, job.transform.clone());
    let mut rows = 0;
    while !failed.load(Ordering::Relaxed) {
        let next = queue.lock().expect("queue lock").pop_front();
        let Some((table, unit)) = next else { break };
        let transform = plugins
            .for_unit(&table.mapping)
            .await
            .map_err(|e| SnapshotError::Row {
                table: e.table,
                message: e.source.message,
            })?;
        let ctx = RangeCtx {
            job,
            reader: &reader,
            dest: &dest,
            table: &table,
            snapshot: &snapshot,
            transform: &transform,
        };
        rows += match unit {
            Unit::Whole => copy_table(&ctx).await?,
            Unit::Range(range) => ctx.copy_range(&range).await?,
            Unit::Merge(range, since) => ctx.merge(&range, &since, true).await?,
            Unit::Refresh(range, since) => ctx.merge(&range, &since, false).await?,
            Unit::SyncKeys => ctx.sync_keys().await?,
            Unit::Leaf(leaf, range) => ctx.copy_leaf(&leaf, &range).await?,
        };
    }
    plugins.report();
    Ok(rows)
}

fn dst_err(table: &str) -> impl Fn(tokio_postgres::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Destination {
        table: table.to_string(),
        source,
    }
}

/// Copies a whole table in one destination transaction: emptied, filled, indexed and recorded
/// as copied together.
async fn copy_table(ctx: &RangeCtx<'_>) -> Result<u64, SnapshotError> {
    let (job, dest, table) = (ctx.job, ctx.dest, ctx.table);
    let mapping = &table.mapping;
    let started = Instant::now();
    job.state
        .set_table_phase(&table.name, "copying", Some(0))
        .await?;
    tracing::info!(table = %table.name, destination = %mapping.destination, "snapshot copy started");
    let err = dst_err(&table.name);
    dest.begin().await.map_err(&err)?;
    dest.truncate(mapping).await.map_err(&err)?;
    let whole = RowFilter::range(&PageRange::WHOLE);
    let streamed = stream_rows(ctx, Into::Table, whole).await?;
    dest.dead_letters(&table.name, &streamed.dead_letters)
        .await
        .map_err(&err)?;
    dest.finish_table(
        &table.name,
        mapping,
        &table.indexes,
        streamed.rows,
        job.sync_lsn,
    )
    .await
    .map_err(&err)?;
    dest.commit().await.map_err(&err)?;
    table.progress.finish(streamed.rows);
    log_finished(
        table,
        started,
        streamed.rows,
        streamed.skipped,
        streamed.dead_letters.len() as u64,
    );
    Ok(streamed.rows)
}

/// Logs and counts a table whose copy finished.
fn log_finished(table: &TableCopy, started: Instant, rows: u64, skipped: u64, dead: u64) {
    crate::metrics::snapshot_table_done();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        table = %table.name,
        rows,
        skipped,
        dead_lettered = dead,
        ranges = table.ranges,
        seconds = format!("{secs:.2}"),
        rows_per_sec = (rows as f64 / secs.max(1e-6)) as u64,
        "snapshot copy finished"
    );
}

/// Names what one COPY reads (its page range and leaf partition), for the position of the
/// rows plugins see: FNV-1a of their text.
fn read_id(filter: &RowFilter<'_>) -> u64 {
    let text = format!(
        "{} {:?}",
        filter.range,
        filter.relation.map(|r| r.to_string())
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What one COPY stream wrote.
struct Streamed {
    rows: u64,
    skipped: u64,
    dead_letters: Vec<crate::transform::DeadLetter>,
}

/// Streams a table (or one range of it) from the snapshot reader into the destination with
/// COPY, inside the caller's destination transaction: raw bytes when no row step touches the
/// table, else parsed, transformed and re-encoded rows.
async fn stream_rows(
    ctx: &RangeCtx<'_>,
    into: Into,
    filter: RowFilter<'_>,
) -> Result<Streamed, SnapshotError> {
    let (reader, dest, mapping) = (ctx.reader, ctx.dest, &ctx.table.mapping);
    let table = mapping.source.name.to_string();
    let src_err = |source| SnapshotError::Source {
        table: table.clone(),
        source,
    };
    let dst_err = dst_err(&table);
    let binary = ctx.job.binary(mapping);
    let sink = dest
        .copy_in(mapping, into, binary)
        .await
        .map_err(&dst_err)?;
    futures_util::pin_mut!(sink);
    let filter = RowFilter {
        published: ctx
            .job
            .row_filters
            .get(&mapping.source.name)
            .map(String::as_str),
        ..filter
    };
    let stream = copy_out::copy_table(reader, mapping, binary, filter)
        .await
        .map_err(|e| SnapshotError::Row {
            table: table.clone(),
            message: e.to_string(),
        })?;
    futures_util::pin_mut!(stream);

    let mut rows: u64 = 0;
    let mut out = BytesMut::with_capacity(SEND_CHUNK * 2);
    let mut row_path = mapping.transforms_rows.then(|| {
        let at = crate::model::Provenance {
            time_us: ctx.job.time_us,
            scope: crate::model::Scope::Snapshot(read_id(&filter)),
            row: 0,
        };
        RowPath::new(mapping.clone(), at)
    });
    let mut dead_letters = Vec::new();
    let mut skipped = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(src_err)?;
        let before = rows;
        match row_path.as_mut() {
            None => {
                // Progress only: the exact count comes from the destination at the end.
                rows += if binary {
                    // One message a row, then the two-byte trailer.
                    u64::from(chunk.as_ref() != BINARY_TRAILER)
                } else {
                    chunk.iter().filter(|&&b| b == b'\n').count() as u64
                };
                out.extend_from_slice(&chunk);
            }
            Some(path) => {
                path.feed(&chunk)?;
                if path.due() {
                    let (n, s, d) = path.run(ctx.transform, &mut out).await?;
                    rows += n;
                    skipped += s;
                    dead_letters.extend(d);
                }
            }
        }
        ctx.table.progress.add(rows - before, chunk.len() as u64);
        if out.len() >= SEND_CHUNK {
            sink.send(out.split().freeze()).await.map_err(&dst_err)?;
        }
    }
    if let Some(path) = row_path.as_mut() {
        for (n, s, d) in [
            path.run(ctx.transform, &mut out).await?,
            path.settle(&mut out).await?,
        ] {
            ctx.table.progress.add(n, 0);
            rows += n;
            skipped += s;
            dead_letters.extend(d);
        }
    }
    if !out.is_empty() {
        sink.send(out.split().freeze()).await.map_err(&dst_err)?;
    }
    let written = sink.finish().await.map_err(&dst_err)?;
    if row_path.is_none() {
        rows = written;
    }
    crate::metrics::snapshot_rows(&table, rows);
    Ok(Streamed {
        rows,
        skipped,
        dead_letters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName, TableSchema};

    fn table(has_primary_key: bool) -> TableMapping {
        let column = |name: &str, is_key| Column {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_sql: "integer".into(),
            not_null: is_key,
            is_key,
        };
        let schema = TableSchema {
            oid: 1,
            name: TableName::new("public", "t"),
            columns: vec![column("id", has_primary_key), column("v", false)],
            identity: ReplicaIdentity::Default,
            has_primary_key,
        };
        TableMapping::identity(Arc::new(schema), "dst")
    }

    #[test]
    fn a_copy_resumes_by_range_only_when_rows_merge_by_a_source_key() {
        assert!(resumable(&table(true)));
        assert!(!resumable(&table(false)), "no key to merge by");
        let mut plugin = table(true);
        plugin.transforms_rows = true;
        assert!(!resumable(&plugin), "plugins change the rows");
        let mut computed = table(true);
        computed.columns[0].source_index = None;
        assert!(!resumable(&computed), "a key the source does not feed");
    }
}
