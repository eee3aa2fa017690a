//! The destination writer: a task that owns the order of everything written to the destination
//! connection, so that decoding and batching the next changes overlap with the destination
//! executing the previous ones.
//!
//! The [`Sink`](super::Sink) hands it [`Work`] in order through a bounded channel (so memory
//! stays bounded: a few batches of at most a few MB each). The writer runs each piece with
//! pipelining (BEGIN, the statements and COMMIT travel together) and publishes the end LSN of
//! every committed destination transaction (the writer is free again), and of every durable one
//! (see [`durability`](super::durability)); only a durable one may be acknowledged to the source.
//!
//! After a failure the writer rolls the open transaction back, drops further work and reports
//! the error to the next [`Writer::drain`]; the connector stops on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Statement};

use super::durability::FlushWatch;
use super::error::{failed, ApplyError};
use super::params::Param;
use super::refusals::{self, Carried, SetAside};
use crate::metrics::Applied;
use crate::model::{Lsn, Op, TableName};

/// Pieces of work waiting for the writer, at most. Each is one pipelined burst (at most
/// 512 statements) or one COPY (at most a few MB).
const QUEUE: usize = 4;

/// How often the destination's flushed WAL position is read while commits wait for it (with
/// `synchronous_commit = off` the WAL writer flushes them within three `wal_writer_delay`s).
const FLUSH_POLL: Duration = Duration::from_millis(50);

/// A statement waiting in the pipeline.
pub(crate) struct Queued {
    pub stmt: Statement,
    pub params: Vec<Param>,
    pub table: TableName,
    pub op: Op,
    /// Rows it should change (for the missing-row warning); `None` to not check.
    pub expected: Option<u64>,
    /// The rows it writes, to name or set aside the ones the destination refuses.
    pub carried: Option<Carried>,
}

/// One piece of destination work, run in the order received.
pub(crate) enum Job {
    /// Statements in one pipelined burst, with BEGIN first when `begin` and COMMIT last when
    /// `commit` holds the end LSN of the last source transaction it commits.
    Pipeline {
        begin: bool,
        batch: Vec<Queued>,
        commit: Option<Lsn>,
        /// What the committed transaction applied, for the metrics.
        applied: Option<Applied>,
    },
    /// `COPY ... FROM STDIN` with the encoded rows.
    Copy {
        begin: bool,
        sql: String,
        data: Bytes,
        carried: Carried,
    },
    /// SQL in the simple protocol (DDL, TRUNCATE) inside the transaction.
    Sql {
        begin: bool,
        sql: String,
        table: TableName,
    },
}

impl Job {
    /// Whether it opens the destination transaction.
    fn begins(&self) -> bool {
        match self {
            Job::Pipeline { begin, .. } | Job::Copy { begin, .. } | Job::Sql { begin, .. } => {
                *begin
            }
        }
    }

    /// The end LSN it commits, if it commits.
    fn commits(&self) -> Option<Lsn> {
        match self {
            Job::Pipeline { commit, .. } => *commit,
            _ => None,
        }
    }
}

/// What travels to the writer task: jobs, and the controls around them.
enum Work {
    Job(Job),
    /// Abandons the open transaction and forgets an earlier failure.
    Rollback,
    /// Answers once everything before it has run.
    Barrier(oneshot::Sender<Result<(), ApplyError>>),
}

/// State shared between the writer task and its handle.
struct Shared {
    /// Set when a piece of work failed; further work is dropped until a rollback.
    failed: AtomicBool,
    /// The failure, handed to the next barrier.
    error: Mutex<Option<ApplyError>>,
    /// Updates and deletes that found no row on the destination, since start.
    missing_rows: AtomicU64,
}

/// The handle the sink uses to queue work.
pub(crate) struct Writer {
    tx: mpsc::Sender<Work>,
    shared: Arc<Shared>,
    committed: watch::Receiver<Lsn>,
    durable: watch::Receiver<Lsn>,
    failed: watch::Receiver<bool>,
}

/// What the writer task publishes.
struct Published {
    /// End LSN of the last committed destination transaction.
    committed: watch::Sender<Lsn>,
    /// End LSN of the last destination transaction known to be flushed.
    durable: watch::Sender<Lsn>,
    /// Becomes true when a piece of work failed.
    failed: watch::Sender<bool>,
}

impl Writer {
    /// Starts the writer task on `client`. With `flush` (the session commits with
    /// `synchronous_commit = off`), a commit counts as durable only once the destination's WAL
    /// is flushed past it; otherwise as soon as COMMIT returns. With `set_aside`, rows the
    /// destination refuses go to the dead-letter table (as `connector`'s) and the rest is
    /// applied; otherwise a refusal stops the writer with the row named.
    pub fn spawn(
        client: Arc<Client>,
        flush: Option<FlushWatch>,
        set_aside: Option<String>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            missing_rows: AtomicU64::new(0),
        });
        let (committed_tx, committed) = watch::channel(Lsn::ZERO);
        let (durable_tx, durable) = watch::channel(Lsn::ZERO);
        let (failed_tx, failed) = watch::channel(false);
        let published = Published {
            committed: committed_tx,
            durable: durable_tx,
            failed: failed_tx,
        };
        let task = Task {
            client,
            shared: shared.clone(),
            published,
            in_tx: false,
            flush,
            set_aside,
        };
        tokio::spawn(run(task, rx));
        Self {
            tx,
            shared,
            committed,
            durable,
            failed,
        }
    }

    /// Changes to true when queued work failed: the failure is then returned by the next
    /// [`Self::drain`], even when nothing else is queued meanwhile.
    pub fn failed(&self) -> watch::Receiver<bool> {
        self.failed.clone()
    }

    /// Queues a job; fails at once when earlier work failed.
    pub async fn send(&self, job: Job) -> Result<(), ApplyError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return self.drain().await;
        }
        self.tx.send(Work::Job(job)).await.map_err(|_| gone())
    }

    /// Abandons the open transaction (what was committed before stays) and waits until the
    /// writer is idle.
    pub async fn rollback(&self) {
        if self.tx.send(Work::Rollback).await.is_ok() {
            let _ = self.drain().await;
        }
    }

    /// Waits until everything queued so far has run; returns the first failure, if any.
    pub async fn drain(&self) -> Result<(), ApplyError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Work::Barrier(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The end LSN of the last destination transaction committed.
    pub fn committed(&self) -> watch::Receiver<Lsn> {
        self.committed.clone()
    }

    /// The end LSN of the last destination transaction committed and flushed.
    pub fn durable(&self) -> watch::Receiver<Lsn> {
        self.durable.clone()
    }

    /// Updates and deletes that found no row on the destination, since start.
    pub fn missing_rows(&self) -> u64 {
        self.shared.missing_rows.load(Ordering::Relaxed)
    }
}

fn gone() -> ApplyError {
    ApplyError::Unusable {
        table: "pgmorph.state".into(),
        message: "the destination writer stopped".into(),
    }
}

fn state_table() -> TableName {
    TableName::new("pgmorph", "state")
}

/// The writer task: the connection, what it publishes, and whether a transaction is open.
struct Task {
    client: Arc<Client>,
    shared: Arc<Shared>,
    published: Published,
    in_tx: bool,
    /// With `synchronous_commit = off`: commits waiting for the destination's WAL flush.
    flush: Option<FlushWatch>,
    /// Under `on_apply_error = "dead_letter"`: the connector whose dead letters refused rows
    /// become.
    set_aside: Option<String>,
}

async fn run(mut task: Task, mut rx: mpsc::Receiver<Work>) {
    loop {
        let waiting = task.flush.as_ref().is_some_and(FlushWatch::waiting);
        let work = tokio::select! {
            work = rx.recv() => match work {
                Some(work) => work,
                None => return,
            },
            _ = tokio::time::sleep(FLUSH_POLL), if waiting => {
                task.poll_flush().await;
                continue;
            }
        };
        match work {
            Work::Barrier(reply) => {
                let _ = reply.send(task.take_failure());
            }
            Work::Rollback => task.rollback().await,
            Work::Job(_) if task.shared.failed.load(Ordering::Acquire) => {}
            Work::Job(job) => task.run_job(job).await,
        }
    }
}

impl Task {
    /// The failure to report to a barrier, if any.
    fn take_failure(&self) -> Result<(), ApplyError> {
        match self.shared.error.lock().map(|mut e| e.take()) {
            Ok(Some(e)) => Err(e),
            _ if self.shared.failed.load(Ordering::Acquire) => Err(ApplyError::Unusable {
                table: state_table().to_string(),
                message: "an earlier destination statement failed".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Abandons the open transaction and forgets an earlier failure.
    async fn rollback(&mut self) {
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self.client.batch_execute("ROLLBACK").await {
                tracing::warn!(error = %e, "rollback on the destination failed");
            }
        }
        if let Ok(mut e) = self.shared.error.lock() {
            *e = None;
        }
        self.shared.failed.store(false, Ordering::Release);
        self.published.failed.send_replace(false);
    }

    async fn run_job(&mut self, mut job: Job) {
        let commit = job.commits();
        let applied = match &mut job {
            Job::Pipeline { applied, .. } => applied.take(),
            _ => None,
        };
        self.in_tx |= job.begins();
        let positions = self.flush.as_ref().map(|f| f.positions.clone());
        let set_aside = self.set_aside.as_deref().map(|connector| SetAside {
            client: &self.client,
            connector,
        });
        let run = Run {
            client: &self.client,
            shared: &self.shared,
            set_aside,
        };
        match run.execute(job, positions.as_ref()).await {
            Ok(after) => {
                if let Some(lsn) = commit {
                    self.in_tx = false;
                    if let Some(applied) = applied {
                        applied.record();
                    }
                    self.published.committed.send_replace(lsn);
                    self.committed_durably(lsn, after.as_ref());
                }
            }
            Err(e) => self.fail(e).await,
        }
    }

    /// Publishes what is durable after the commit of source position `lsn`: all of it when
    /// COMMIT waits for the flush, else what the positions read after it say.
    fn committed_durably(&mut self, lsn: Lsn, positions: Option<&tokio_postgres::Row>) {
        let durable = match (&mut self.flush, positions) {
            (Some(flush), Some(row)) => flush.committed(lsn, row),
            _ => Some(lsn),
        };
        if let Some(lsn) = durable {
            self.published.durable.send_replace(lsn);
        }
    }

    /// Reads the destination's flushed position and publishes what it makes durable.
    async fn poll_flush(&mut self) {
        let Some(flush) = &mut self.flush else { return };
        match flush.poll(&self.client).await {
            Ok(Some(lsn)) => {
                self.published.durable.send_replace(lsn);
            }
            Ok(None) => {}
            Err(e) => self.fail(failed(&state_table())(e)).await,
        }
    }

    /// Rolls the open transaction back and keeps the error for the next barrier.
    async fn fail(&mut self, e: ApplyError) {
        if self.in_tx {
            self.in_tx = false;
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        if let Ok(mut slot) = self.shared.error.lock() {
            *slot = Some(e);
        }
        self.shared.failed.store(true, Ordering::Release);
        self.published.failed.send_replace(true);
    }
}

/// What a job runs with.
struct Run<'a> {
    client: &'a Client,
    shared: &'a Shared,
    set_aside: Option<SetAside<'a>>,
}

impl Run<'_> {
    /// Runs one job; for a committing pipeline with `positions`, returns the row that
    /// statement read right after COMMIT.
    async fn execute(
        &self,
        job: Job,
        positions: Option<&Statement>,
    ) -> Result<Option<tokio_postgres::Row>, ApplyError> {
        match job {
            Job::Pipeline {
                begin,
                batch,
                commit,
                ..
            } => {
                let positions = positions.filter(|_| commit.is_some());
                match &self.set_aside {
                    Some(set_aside) => {
                        let counts = set_aside.burst(begin, &batch).await?;
                        count_missing(&batch, &counts, self.shared);
                        self.commit(commit.is_some(), positions).await
                    }
                    None => {
                        self.pipeline(begin, &batch, commit.is_some(), positions)
                            .await
                    }
                }
            }
            Job::Copy {
                begin,
                sql,
                data,
                carried,
            } => {
                if begin {
                    self.client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(failed(&state_table()))?;
                }
                match &self.set_aside {
                    Some(set_aside) => set_aside.copy(&sql, data, &carried).await?,
                    None => {
                        if let Err(e) = refusals::copy_in(self.client, &sql, data).await {
                            return Err(refusals::name_refused(self.client, &carried, e).await);
                        }
                    }
                }
                Ok(None)
            }
            Job::Sql { begin, sql, table } => {
                let sql = if begin { format!("BEGIN; {sql}") } else { sql };
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(failed(&table))?;
                Ok(None)
            }
        }
    }

    /// COMMIT when asked, then the `positions` query if given.
    async fn commit(
        &self,
        commit: bool,
        positions: Option<&Statement>,
    ) -> Result<Option<tokio_postgres::Row>, ApplyError> {
        if !commit {
            return Ok(None);
        }
        let state = state_table();
        let (committed, after) = tokio::join!(
            self.client.batch_execute("COMMIT"),
            self.positions(positions)
        );
        committed.map_err(failed(&state))?;
        after
    }

    async fn positions(
        &self,
        positions: Option<&Statement>,
    ) -> Result<Option<tokio_postgres::Row>, ApplyError> {
        match positions {
            Some(stmt) => self
                .client
                .query_one(stmt, &[])
                .await
                .map(Some)
                .map_err(failed(&state_table())),
            None => Ok(None),
        }
    }

    /// Sends the statements in one burst, BEGIN first if asked, COMMIT last with `commit` and
    /// then the `positions` query if given, and waits for all answers. A refused statement
    /// fails the burst with the refused row named.
    async fn pipeline(
        &self,
        begin: bool,
        batch: &[Queued],
        commit: bool,
        positions: Option<&Statement>,
    ) -> Result<Option<tokio_postgres::Row>, ApplyError> {
        let client = self.client;
        let state = state_table();
        let begin_fut = async {
            if begin {
                client.batch_execute("BEGIN").await
            } else {
                Ok(())
            }
        };
        let statements_fut = join_all(
            batch
                .iter()
                .map(|q| client.execute_raw(&q.stmt, q.params.iter())),
        );
        let commit_fut = async {
            if commit {
                client.batch_execute("COMMIT").await
            } else {
                Ok(())
            }
        };
        let (begun, results, committed, after) = tokio::join!(
            begin_fut,
            statements_fut,
            commit_fut,
            self.positions(positions)
        );
        begun.map_err(failed(&state))?;
        let mut counts = Vec::with_capacity(results.len());
        for (result, q) in results.into_iter().zip(batch) {
            match result {
                Ok(n) => counts.push(n),
                Err(e) => return Err(self.refused(q, e).await),
            }
        }
        committed.map_err(failed(&state))?;
        count_missing(batch, &counts, self.shared);
        after
    }

    /// The error of a failed statement, naming the refused row when the destination refused
    /// one.
    async fn refused(&self, q: &Queued, e: tokio_postgres::Error) -> ApplyError {
        match &q.carried {
            Some(carried) => refusals::name_refused(self.client, carried, e).await,
            None => failed(&q.table)(e),
        }
    }
}

/// Counts and logs the updates and deletes that found fewer rows than expected.
fn count_missing(batch: &[Queued], counts: &[u64], shared: &Shared) {
    for (n, q) in counts.iter().zip(batch.iter()) {
        if let Some(expected) = q.expected {
            if *n < expected {
                shared
                    .missing_rows
                    .fetch_add(expected - n, Ordering::Relaxed);
                tracing::warn!(
                    table = %q.table,
                    op = q.op.as_str(),
                    missing = expected - n,
                    "rows to change not found on the destination"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_says_whether_it_opens_and_what_it_commits() {
        let pipeline = |begin, commit| Job::Pipeline {
            begin,
            batch: Vec::new(),
            commit,
            applied: None,
        };
        assert!(pipeline(true, None).begins());
        assert_eq!(pipeline(false, Some(Lsn(9))).commits(), Some(Lsn(9)));
        let schema = crate::model::TableSchema {
            oid: 1,
            name: state_table(),
            columns: Vec::new(),
            identity: crate::model::ReplicaIdentity::Default,
            has_primary_key: true,
        };
        let copy = Job::Copy {
            begin: false,
            sql: String::new(),
            data: Bytes::new(),
            carried: Carried {
                mapping: Arc::new(crate::model::TableMapping::identity(Arc::new(schema), "d")),
                op: Op::Insert,
                rows: Vec::new(),
            },
        };
        assert!(!copy.begins());
        assert_eq!(copy.commits(), None, "only a pipeline commits");
        let sql = Job::Sql {
            begin: true,
            sql: String::new(),
            table: state_table(),
        };
        assert!(sql.begins() && sql.commits().is_none());
    }
}
