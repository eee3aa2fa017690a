//! A worker's own plugin instances: each snapshot copy worker's, and each part of a large CDC
//! row step's (see `cdc::row_pool`). A worker copies the shared transform
//! ([`Transform::fork`]: the compiled components are shared, every instance has its own store and
//! limits) and runs its row steps on a thread of its own, so the plugins of several workers run
//! at once instead of queueing for one plugin thread.
//!
//! Before each unit of work (one destination transaction, or one CDC row step) the worker
//! compares the shared
//! transform's [`Transform::generation`] with its copy's and copies it again when it moved on: a
//! reloaded chain, or a table mapped again, reaches every worker between transactions, and the
//! rows of one unit all go through one chain version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;

use crate::model::{RowChange, TableMapping, TableSchema};
use crate::transform::{
    RowOutcome, RowStepError, SharedTransform, TableBatch, Transform, TransformError,
};

/// A worker's plugin instances, made when a unit first needs the row path.
pub(super) struct WorkerPlugins {
    /// What the worker is, in thread names and logs (`snapshot`, `cdc`).
    role: &'static str,
    worker: usize,
    shared: SharedTransform,
    /// The thread the worker's plugins run on (no Tokio context, as wasmtime-wasi needs).
    thread: Option<Arc<rayon_core::ThreadPool>>,
    /// The worker's copy and the generation it was made from.
    own: Option<(u64, SharedTransform)>,
    stats: Arc<StepStats>,
}

/// What a worker's row steps did.
#[derive(Debug, Default)]
struct StepStats {
    batches: AtomicU64,
    rows: AtomicU64,
    busy_ns: AtomicU64,
}

impl WorkerPlugins {
    pub(super) fn new(role: &'static str, worker: usize, shared: SharedTransform) -> Self {
        Self {
            role,
            worker,
            shared,
            thread: None,
            own: None,
            stats: Arc::default(),
        }
    }

    /// The transform for the next unit of `mapping`'s table: the worker's copy, made again if
    /// the shared transform changed since; the shared one when the table's rows go through no
    /// plugin or the transform cannot be copied.
    pub(super) async fn for_unit(
        &mut self,
        mapping: &TableMapping,
    ) -> Result<SharedTransform, RowStepError> {
        if !mapping.transforms_rows || mapping.skip {
            return Ok(self.shared.clone());
        }
        let generation = self.shared.lock().await.generation();
        if let Some((made_from, own)) = &self.own {
            if *made_from == generation {
                return Ok(own.clone());
            }
        }
        let own = self.fork(&mapping.source.name.to_string()).await?;
        self.own = Some(own.clone());
        Ok(own.1)
    }

    /// Copies the shared transform on the worker's thread (instantiation included).
    async fn fork(&mut self, table: &str) -> Result<(u64, SharedTransform), RowStepError> {
        let thread = self.thread()?;
        let shared = self.shared.clone();
        let on = thread.clone();
        let made = tokio::task::spawn_blocking(move || {
            let mut guard = shared.blocking_lock();
            let generation = guard.generation();
            let transform: &mut Box<dyn Transform> = &mut guard;
            let forked = on.install(move || transform.fork())?;
            Ok::<_, TransformError>((generation, forked))
        })
        .await
        .map_err(|e| {
            row_step_error(
                table,
                format!("starting the worker's plugin instances: {e}"),
            )
        })?;
        let (generation, forked) = made.map_err(|e| row_step_error(table, e.message))?;
        let Some(forked) = forked else {
            return Ok((generation, self.shared.clone()));
        };
        tracing::debug!(
            role = self.role,
            worker = self.worker,
            generation,
            "worker started its own plugin instances"
        );
        let own: Box<dyn Transform> = Box::new(OnThread {
            inner: forked,
            thread,
            stats: self.stats.clone(),
        });
        Ok((generation, Arc::new(Mutex::new(own))))
    }

    fn thread(&mut self) -> Result<Arc<rayon_core::ThreadPool>, RowStepError> {
        if let Some(t) = &self.thread {
            return Ok(t.clone());
        }
        let (role, worker) = (self.role, self.worker);
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(move |_| format!("plugins-{role}{worker}"))
            .build()
            .map_err(|e| {
                row_step_error(
                    "(worker)",
                    format!("cannot start a plugin thread for {role} worker {worker}: {e}"),
                )
            })?;
        Ok(self.thread.insert(Arc::new(pool)).clone())
    }

    /// Logs what the worker's plugin instances did: batches, rows, time in the row step and
    /// the CPU time of the worker's plugin thread.
    pub(super) fn report(&self) {
        let Some(thread) = &self.thread else { return };
        let cpu_ms = thread.install(thread_cpu_ns).map(|ns| ns / 1_000_000);
        let s = &self.stats;
        tracing::info!(
            role = self.role,
            worker = self.worker,
            batches = s.batches.load(Ordering::Relaxed),
            rows = s.rows.load(Ordering::Relaxed),
            busy_ms = s.busy_ns.load(Ordering::Relaxed) / 1_000_000,
            cpu_ms,
            "worker's plugin instances finished"
        );
    }
}

fn row_step_error(table: &str, message: String) -> RowStepError {
    RowStepError {
        table: table.to_string(),
        source: TransformError { message },
    }
}

/// The CPU time of the calling thread so far (Linux), in nanoseconds.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A worker's copy of the transform, run on the worker's plugin thread.
struct OnThread {
    inner: Box<dyn Transform>,
    thread: Arc<rayon_core::ThreadPool>,
    stats: Arc<StepStats>,
}

impl OnThread {
    fn timed<R: Send>(&mut self, rows: usize, f: impl FnOnce(&mut dyn Transform) -> R + Send) -> R {
        let started = Instant::now();
        let inner = self.inner.as_mut();
        let result = self.thread.install(move || f(inner));
        let s = &self.stats;
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.rows.fetch_add(rows as u64, Ordering::Relaxed);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        s.busy_ns.fetch_add(ns, Ordering::Relaxed);
        result
    }
}

impl Transform for OnThread {
    fn map_table(
        &mut self,
        source: Arc<TableSchema>,
        dest_schema: &str,
    ) -> Result<TableMapping, TransformError> {
        let inner = self.inner.as_mut();
        self.thread
            .install(move || inner.map_table(source, dest_schema))
    }

    fn transform_rows(
        &mut self,
        mapping: &TableMapping,
        batch: &mut Vec<RowChange>,
    ) -> Result<RowOutcome, TransformError> {
        self.timed(batch.len(), move |t| t.transform_rows(mapping, batch))
    }

    fn transform_batches(&mut self, batches: &mut [TableBatch]) -> Result<(), RowStepError> {
        let rows = batches.iter().map(|b| b.changes.len()).sum();
        self.timed(rows, move |t| t.transform_batches(batches))
    }

    fn generation(&self) -> u64 {
        self.inner.generation()
    }
}
