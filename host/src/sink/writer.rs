//! The destination writer: a task that owns the order of everything written to the destination
//! connection, so that decoding and batching the next changes overlap with the destination
//! executing the previous ones.
//!
//! The [`Sink`](super::Sink) hands it [`Work`] in order through a bounded channel (so memory
//! stays bounded: a few batches of at most a few MB each). The writer runs each piece with
//! pipelining (BEGIN, the statements and COMMIT travel together) and publishes the end LSN of
//! every committed destination transaction; only then may the source be acknowledged.
//!
//! After a failure the writer rolls the open transaction back, drops further work and reports
//! the error to the next [`Writer::drain`]; the connector stops on it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{future::try_join_all, SinkExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{Client, Statement};

use super::apply::{failed, ApplyError};
use super::params::TextParam;
use crate::model::{Lsn, Op, TableName};

/// Pieces of work waiting for the writer, at most. Each is one pipelined burst (at most
/// 512 statements) or one COPY (at most a few MB).
const QUEUE: usize = 4;

/// A statement waiting in the pipeline.
pub(crate) struct Queued {
    pub stmt: Statement,
    pub params: Vec<TextParam>,
    pub table: TableName,
    pub op: Op,
    /// Rows it should change (for the missing-row warning); `None` to not check.
    pub expected: Option<u64>,
}

/// One piece of destination work, run in the order received.
pub(crate) enum Job {
    /// Statements in one pipelined burst, with BEGIN first when `begin` and COMMIT last when
    /// `commit` holds the end LSN of the last source transaction it commits.
    Pipeline {
        begin: bool,
        batch: Vec<Queued>,
        commit: Option<Lsn>,
    },
    /// `COPY ... FROM STDIN` with the encoded rows.
    Copy {
        begin: bool,
        sql: String,
        data: Bytes,
        table: TableName,
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
}

impl Writer {
    /// Starts the writer task on `client`.
    pub fn spawn(client: Arc<Client>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            missing_rows: AtomicU64::new(0),
        });
        let (committed_tx, committed) = watch::channel(Lsn::ZERO);
        tokio::spawn(run(client, rx, shared.clone(), committed_tx));
        Self {
            tx,
            shared,
            committed,
        }
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

async fn run(
    client: Arc<Client>,
    mut rx: mpsc::Receiver<Work>,
    shared: Arc<Shared>,
    committed: watch::Sender<Lsn>,
) {
    let mut in_tx = false;
    while let Some(work) = rx.recv().await {
        match work {
            Work::Barrier(reply) => {
                let result = match shared.error.lock().map(|mut e| e.take()) {
                    Ok(Some(e)) => Err(e),
                    _ if shared.failed.load(Ordering::Acquire) => Err(ApplyError::Unusable {
                        table: state_table().to_string(),
                        message: "an earlier destination statement failed".into(),
                    }),
                    _ => Ok(()),
                };
                let _ = reply.send(result);
            }
            Work::Rollback => {
                if in_tx {
                    in_tx = false;
                    if let Err(e) = client.batch_execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "rollback on the destination failed");
                    }
                }
                if let Ok(mut e) = shared.error.lock() {
                    *e = None;
                }
                shared.failed.store(false, Ordering::Release);
            }
            Work::Job(_) if shared.failed.load(Ordering::Acquire) => {}
            Work::Job(job) => {
                let commit = job.commits();
                in_tx |= job.begins();
                match execute(&client, job, &shared).await {
                    Ok(()) => {
                        if let Some(lsn) = commit {
                            in_tx = false;
                            committed.send_replace(lsn);
                        }
                    }
                    Err(e) => {
                        if in_tx {
                            in_tx = false;
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                        if let Ok(mut slot) = shared.error.lock() {
                            *slot = Some(e);
                        }
                        shared.failed.store(true, Ordering::Release);
                    }
                }
            }
        }
    }
}

async fn execute(client: &Client, job: Job, shared: &Shared) -> Result<(), ApplyError> {
    match job {
        Job::Pipeline {
            begin,
            batch,
            commit,
        } => pipeline(client, begin, &batch, commit.is_some(), shared).await,
        Job::Copy {
            begin,
            sql,
            data,
            table,
        } => {
            if begin {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(failed(&state_table()))?;
            }
            let sink = client
                .copy_in::<_, Bytes>(&sql)
                .await
                .map_err(failed(&table))?;
            futures_util::pin_mut!(sink);
            sink.send(data).await.map_err(failed(&table))?;
            sink.finish().await.map_err(failed(&table))?;
            Ok(())
        }
        Job::Sql { begin, sql, table } => {
            let sql = if begin { format!("BEGIN; {sql}") } else { sql };
            client.batch_execute(&sql).await.map_err(failed(&table))
        }
    }
}

/// Sends the statements in one burst, BEGIN first if asked and COMMIT last with `commit`, and
/// waits for all answers.
async fn pipeline(
    client: &Client,
    begin: bool,
    batch: &[Queued],
    commit: bool,
    shared: &Shared,
) -> Result<(), ApplyError> {
    let state = state_table();
    let begin_fut = async {
        if begin {
            client.batch_execute("BEGIN").await.map_err(failed(&state))
        } else {
            Ok(())
        }
    };
    let statements_fut = try_join_all(batch.iter().map(|q| async move {
        client
            .execute_raw(&q.stmt, q.params.iter())
            .await
            .map_err(failed(&q.table))
    }));
    let commit_fut = async {
        if commit {
            client.batch_execute("COMMIT").await.map_err(failed(&state))
        } else {
            Ok(())
        }
    };
    let ((), results, ()) =
        futures_util::future::try_join3(begin_fut, statements_fut, commit_fut).await?;
    for (n, q) in results.iter().zip(batch.iter()) {
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
    Ok(())
}
