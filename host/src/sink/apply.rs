//! Applying changes on the destination, one destination transaction per source transaction (or
//! per group of them). The sink turns changes into statements and COPY data and queues them for
//! the [writer](super::writer), which runs them while the next changes are decoded. Statements
//! are pipelined: BEGIN, the changes and, at the end, progress, counters and COMMIT travel
//! together, so a small transaction costs about one round trip. Long runs of inserts into one
//! table become one COPY; runs of deletes by a single-column key become one
//! `DELETE ... = ANY(...)`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::copy_rows::CopyForm;
use super::durability::FlushWatch;
use super::error::{failed, ApplyError};
use super::params::Param;
use super::refusals::{Carried, CarriedRow};
use super::statements::{self, Built};
use super::writer::{Job, Queued, Writer};
use crate::config::OnApplyError;
use crate::metrics::{Applied, Tally};
use crate::model::{Lsn, Op, Row, RowChange, TableMapping, TableName};
use crate::state::{Progress, TxCounts};
use crate::transform::DeadLetter;

/// Inserts buffered before a COPY is sent.
const MAX_COPY_BYTES: usize = 4 << 20;
/// A run of inserts at least this long goes through COPY; shorter runs are INSERT statements.
const COPY_MIN_ROWS: usize = 32;
/// Updates or deletes gathered into one statement, at most.
const MAX_DELETE_RUN: usize = 1000;
/// Statements sent in one pipelined burst.
const MAX_PIPELINE: usize = 512;

/// Consecutive changes of one kind to one table, gathered before they become statements.
enum Run {
    /// Inserts: kept as rows while few, encoded for COPY once there are many (`form`: how the
    /// COPY crosses; `None` for rows mixing text and binary values, never copied).
    Insert {
        mapping: Arc<TableMapping>,
        form: Option<CopyForm>,
        rows: Vec<Row>,
        lsns: Vec<Lsn>,
        copy: Option<BytesMut>,
    },
    /// Updates of one shape (same columns set), distinct keys, keys unchanged.
    Update {
        mapping: Arc<TableMapping>,
        shape: Vec<bool>,
        /// Row index by key, so a later update of the same key replaces the earlier one.
        keys: HashMap<Vec<Bytes>, usize>,
        rows: Vec<Row>,
        lsns: Vec<Lsn>,
    },
    /// Deletes of a single-key table.
    Delete {
        mapping: Arc<TableMapping>,
        key: usize,
        olds: Vec<Row>,
        lsns: Vec<Lsn>,
    },
}

impl Run {
    fn mapping(&self) -> &Arc<TableMapping> {
        match self {
            Run::Insert { mapping, .. }
            | Run::Update { mapping, .. }
            | Run::Delete { mapping, .. } => mapping,
        }
    }
}

/// The destination connection used for applying changes.
pub struct Sink {
    client: Arc<Client>,
    writer: Writer,
    connector: String,
    statements: HashMap<String, Statement>,
    in_tx: bool,
    need_begin: bool,
    runs: Vec<Run>,
    /// Whether changes of different tables may be reordered inside a destination transaction
    /// (no foreign keys or triggers on the destination tables): each table's changes keep their
    /// order, and consecutive same-shape updates of one table become one statement.
    pub reorder_tables: bool,
    /// Whether a source DDL command the destination refuses is skipped and recorded
    /// (`on_ddl_error = "skip"`) instead of stopping the connector.
    pub skip_refused_ddl: bool,
    pipeline: Vec<Queued>,
    /// Counters of the open transaction.
    pub counts: TxCounts,
    /// What the open transaction applies, per table, for the metrics.
    tally: Tally,
    /// Which apply lane this connection is (`apply.parallel`): lane 0 writes the connector's
    /// progress and counters, the others their own position.
    lane: u32,
    /// Whether progress written by this connection also drops the lanes' positions behind it
    /// (see [`crate::state::store_sql::LANES_SETTLED`]).
    pub(crate) settles_lanes: bool,
}

impl Sink {
    /// Wraps a destination connection and starts its writer. When the session commits with
    /// `synchronous_commit = off`, commits count as durable only once the destination's WAL is
    /// flushed past them (see [`Self::durable`]). `on_refusal` says what happens to a row the
    /// destination refuses.
    pub async fn open(
        client: Client,
        connector: &str,
        on_refusal: OnApplyError,
    ) -> Result<Self, ApplyError> {
        let state = TableName::new("pgmorph", "state");
        let setting: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .map_err(failed(&state))?
            .get(0);
        let flush = match setting.as_str() {
            "off" => Some(FlushWatch::prepare(&client).await.map_err(failed(&state))?),
            _ => None,
        };
        tracing::debug!(
            synchronous_commit = setting,
            "destination commits are acknowledged once flushed"
        );
        let client = Arc::new(client);
        Ok(Self {
            writer: Writer::spawn(
                client.clone(),
                flush,
                (on_refusal == OnApplyError::DeadLetter).then(|| connector.to_string()),
            ),
            client,
            connector: connector.to_string(),
            statements: HashMap::new(),
            in_tx: false,
            need_begin: false,
            runs: Vec::new(),
            reorder_tables: false,
            skip_refused_ddl: false,
            pipeline: Vec::new(),
            counts: TxCounts::default(),
            tally: Tally::default(),
            lane: 0,
            settles_lanes: false,
        })
    }

    /// Sets up the apply connection's session before [`Self::open`]: `synchronous_commit = off`
    /// when asked, and set-based updates that join a few hundred keys to a table by index
    /// lookups, never by a scan of the whole table.
    pub async fn prepare_session(client: &Client, async_commit: bool) {
        if async_commit {
            let _ = client.batch_execute("SET synchronous_commit = off").await;
        }
        let _ = client
            .batch_execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
            .await;
    }

    /// Makes this connection apply lane `lane` (see [`super::lanes`]).
    pub(super) fn set_lane(&mut self, lane: u32) {
        self.lane = lane;
        self.reorder_tables |= lane > 0;
    }

    /// The SQL client, for use when nothing is queued (see [`Self::settled`]), e.g. before
    /// streaming starts.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends everything gathered so far, waits until the destination has run it, and returns
    /// the client for direct use in the open transaction (or between transactions).
    pub async fn settled(&mut self) -> Result<&Client, ApplyError> {
        self.flush().await?;
        self.writer.drain().await?;
        Ok(&self.client)
    }

    /// The end LSN of the last destination transaction the writer committed (the writer is
    /// free once it reaches the last commit queued).
    pub fn committed(&self) -> watch::Receiver<Lsn> {
        self.writer.committed()
    }

    /// Changes to true when queued work failed on the destination (see [`Self::drain`]).
    pub fn failed(&self) -> watch::Receiver<bool> {
        self.writer.failed()
    }

    /// The end LSN of the last destination transaction committed and flushed: everything up to
    /// it may be acknowledged to the source.
    pub fn durable(&self) -> watch::Receiver<Lsn> {
        self.writer.durable()
    }

    /// Updates and deletes that found no row on the destination, since start.
    pub fn missing_rows(&self) -> u64 {
        self.writer.missing_rows()
    }

    /// Whether a destination transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_tx
    }

    /// Opens the destination transaction if it is not open yet (BEGIN goes out with the first
    /// statements).
    pub async fn begin(&mut self) -> Result<(), ApplyError> {
        if !self.in_tx {
            self.in_tx = true;
            self.need_begin = true;
            self.counts = TxCounts::default();
        }
        Ok(())
    }

    /// Runs DDL inside the open transaction (e.g. adding a column the source gained).
    pub async fn execute_ddl(&mut self, table: &TableName, sql: &str) -> Result<(), ApplyError> {
        self.begin().await?;
        self.flush().await?;
        self.send_sql(table, sql.to_string()).await?;
        // Statements are prepared outside the writer: they must see the new shape.
        self.writer.drain().await
    }

    /// Forgets the prepared statements: after source DDL, the destination tables they name
    /// may have other columns or types.
    pub fn forget_statements(&mut self) {
        self.statements.clear();
    }

    /// Applies changes of one table, in order; `lsn` is their source transaction's final LSN
    /// (named when the destination refuses one of them).
    pub async fn apply(
        &mut self,
        mapping: &Arc<TableMapping>,
        changes: Vec<RowChange>,
        lsn: Lsn,
    ) -> Result<(), ApplyError> {
        self.begin().await?;
        self.tally.add(&mapping.source.name, &changes);
        for change in changes {
            match change.op {
                Op::Insert | Op::Snapshot => {
                    let row = change
                        .new
                        .ok_or_else(|| unusable(mapping, "an insert without a new row"))?;
                    self.push_insert(mapping, row, lsn).await?;
                }
                Op::Update => {
                    let new = change
                        .new
                        .ok_or_else(|| unusable(mapping, "an update without a new row"))?;
                    self.counts.updates += 1;
                    if change.old.is_none() && statements::updates_batchable(mapping) {
                        self.push_update(mapping, new, lsn).await?;
                        continue;
                    }
                    self.end_table(mapping).await?;
                    let built = statements::update(mapping, change.old.as_ref(), &new)
                        .map_err(|m| unusable(mapping, &m))?;
                    if let Some(built) = built {
                        let row = CarriedRow {
                            lsn,
                            old: change.old,
                            new: Some(new),
                        };
                        let carried = carry(mapping, Op::Update, vec![row]);
                        self.queue(mapping, built, carried, Some(1)).await?;
                    }
                }
                Op::Delete => {
                    let old = change
                        .old
                        .ok_or_else(|| unusable(mapping, "a delete without an old row"))?;
                    self.push_delete(mapping, old, lsn).await?;
                }
            }
        }
        Ok(())
    }

    /// Truncates destination tables.
    pub async fn truncate(&mut self, tables: &[TableName]) -> Result<(), ApplyError> {
        if tables.is_empty() {
            return Ok(());
        }
        self.begin().await?;
        self.flush().await?;
        let list: Vec<String> = tables.iter().map(TableName::quoted).collect();
        self.send_sql(&tables[0], format!("TRUNCATE {}", list.join(", ")))
            .await?;
        self.counts.truncates += tables.len() as i64;
        for t in tables {
            self.tally.truncate(t);
        }
        Ok(())
    }

    /// Writes dead-lettered rows in the open transaction.
    pub async fn dead_letter(
        &mut self,
        source: &TableName,
        lsn: &str,
        rows: &[DeadLetter],
    ) -> Result<(), ApplyError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.begin().await?;
        self.end_run().await?;
        let table = TableName::new("pgmorph", "dead_letters");
        let stmt = self.prepare(&table, super::dead_letters::INSERT).await?;
        for d in rows {
            let params = super::dead_letters::params(
                &self.connector,
                &source.to_string(),
                d.op.as_str(),
                lsn,
                d,
            );
            self.pipeline.push(Queued {
                stmt: stmt.clone(),
                params,
                table: table.clone(),
                op: Op::Insert,
                expected: None,
                carried: None,
            });
            if self.pipeline.len() >= MAX_PIPELINE {
                self.send_pipeline().await?;
            }
        }
        self.counts.dead_lettered += rows.len() as i64;
        Ok(())
    }

    /// Sends everything gathered so far.
    pub async fn flush(&mut self) -> Result<(), ApplyError> {
        self.end_run().await?;
        self.send_pipeline().await
    }

    /// Writes progress and counters, then commits `transactions` source transactions applied
    /// in this destination transaction, all in one pipelined burst. Nothing happens if no
    /// transaction is open. The commit is queued: [`Self::committed`] tells when it is done.
    pub async fn commit(
        &mut self,
        progress: Progress,
        transactions: i64,
    ) -> Result<(), ApplyError> {
        if !self.in_tx {
            return Ok(());
        }
        self.end_run().await?;
        if self.lane > 0 {
            self.queue_lane_progress(progress.lsn).await?;
        } else {
            self.queue_progress(progress).await?;
            self.queue_stats(progress, transactions).await?;
        }
        let transactions = if self.lane > 0 { 0 } else { transactions };
        let applied = self.tally.finish(transactions, progress.commit_time);
        self.send_commit(progress.lsn, applied).await?;
        self.in_tx = false;
        Ok(())
    }

    /// Records a stream position that brought nothing to apply (transactions the publication
    /// or the plugins left empty, keepalives) in a destination transaction of its own, so that
    /// it may be acknowledged once durable and the stored position never falls behind the
    /// slot's. No transaction may be open.
    pub async fn record_position(&mut self, progress: Progress) -> Result<(), ApplyError> {
        debug_assert!(!self.in_tx, "between transactions only");
        self.begin().await?;
        self.queue_progress(progress).await?;
        self.send_commit(progress.lsn, None).await?;
        self.in_tx = false;
        Ok(())
    }

    async fn queue_progress(&mut self, progress: Progress) -> Result<(), ApplyError> {
        let name = Param::from(self.connector.clone());
        let offset = progress.to_json().to_string().into();
        self.queue_state(crate::state::store_sql::PROGRESS, vec![name, offset])
            .await?;
        if self.settles_lanes {
            let params = vec![
                self.connector.clone().into(),
                progress.lsn.to_string().into(),
            ];
            self.queue_state(crate::state::store_sql::LANES_SETTLED, params)
                .await?;
        }
        Ok(())
    }

    /// An apply lane's own position (lanes other than 0).
    async fn queue_lane_progress(&mut self, lsn: Lsn) -> Result<(), ApplyError> {
        let params = vec![
            self.connector.clone().into(),
            self.lane.to_string().into(),
            lsn.to_string().into(),
        ];
        self.queue_state(crate::state::store_sql::LANE_PROGRESS, params)
            .await
    }

    /// Queues a statement on pgmorph's state tables.
    async fn queue_state(&mut self, sql: &str, params: Vec<Param>) -> Result<(), ApplyError> {
        let state = TableName::new("pgmorph", "state");
        let stmt = self.prepare(&state, sql).await?;
        self.pipeline.push(Queued {
            stmt,
            params,
            table: state,
            op: Op::Update,
            expected: None,
            carried: None,
        });
        Ok(())
    }

    async fn queue_stats(
        &mut self,
        progress: Progress,
        transactions: i64,
    ) -> Result<(), ApplyError> {
        let c = self.counts;
        let mut params = vec![Param::from(self.connector.clone())];
        for n in [
            c.inserts,
            c.updates,
            c.deletes,
            c.truncates,
            c.skipped,
            c.dead_lettered,
        ] {
            params.push(n.to_string().into());
        }
        params.push(
            (progress.commit_time + 946_684_800_000_000)
                .to_string()
                .into(),
        );
        params.push(transactions.to_string().into());
        self.queue_state(crate::state::store_sql::STATS, params)
            .await
    }

    /// Runs DDL statements in a destination transaction of their own (no transaction may be
    /// open); on error nothing of them is kept.
    pub async fn run_ddl(
        &mut self,
        table: &TableName,
        statements: &[String],
    ) -> Result<(), ApplyError> {
        debug_assert!(!self.in_tx, "DDL between transactions only");
        self.writer.drain().await?;
        let sql = super::ddl::in_transaction(statements);
        if let Err(e) = self.client.batch_execute(&sql).await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(failed(table)(e));
        }
        Ok(())
    }

    /// Abandons the open transaction (what was committed before stays) and waits until the
    /// writer is idle.
    pub async fn rollback(&mut self) {
        self.runs.clear();
        self.pipeline.clear();
        self.tally.clear();
        self.in_tx = false;
        self.need_begin = false;
        self.writer.rollback().await;
    }

    /// Forgets the changes gathered and not sent yet (the open transaction stays open).
    pub(super) fn discard_unsent(&mut self) {
        self.runs.clear();
        self.pipeline.clear();
    }

    /// Waits until everything queued has run; returns the first failure.
    pub async fn drain(&mut self) -> Result<(), ApplyError> {
        self.writer.drain().await
    }

    async fn prepare(&mut self, table: &TableName, sql: &str) -> Result<Statement, ApplyError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = match self.client.prepare(sql).await {
            Ok(s) => s,
            // Prepared while the writer's transaction is aborted: a refused row. Once the writer
            // is idle it has either set the row aside (the transaction goes on) or failed.
            Err(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {
                self.writer.drain().await?;
                self.client.prepare(sql).await.map_err(failed(table))?
            }
            Err(e) => return Err(failed(table)(e)),
        };
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    async fn queue(
        &mut self,
        mapping: &TableMapping,
        built: Built,
        carried: Carried,
        expected: Option<u64>,
    ) -> Result<(), ApplyError> {
        let stmt = self.prepare(&mapping.destination, &built.sql).await?;
        self.pipeline.push(Queued {
            stmt,
            params: built.params,
            table: mapping.destination.clone(),
            op: carried.op,
            expected,
            carried: Some(carried),
        });
        if self.pipeline.len() >= MAX_PIPELINE {
            self.send_pipeline().await?;
        }
        Ok(())
    }

    /// Index of the open run of this table.
    fn run_of(&self, mapping: &Arc<TableMapping>) -> Option<usize> {
        self.runs
            .iter()
            .position(|r| Arc::ptr_eq(r.mapping(), mapping))
    }

    /// Without cross-table reordering, a change of one table ends the runs of the others.
    async fn make_room(&mut self, mapping: &Arc<TableMapping>) -> Result<(), ApplyError> {
        if !self.reorder_tables {
            while let Some(i) = self
                .runs
                .iter()
                .position(|r| !Arc::ptr_eq(r.mapping(), mapping))
            {
                self.end_run_at(i).await?;
            }
        }
        Ok(())
    }

    /// Ends this table's run, so that what follows for the table comes after it.
    async fn end_table(&mut self, mapping: &Arc<TableMapping>) -> Result<(), ApplyError> {
        self.make_room(mapping).await?;
        if let Some(i) = self.run_of(mapping) {
            self.end_run_at(i).await?;
        }
        Ok(())
    }

    async fn push_insert(
        &mut self,
        mapping: &Arc<TableMapping>,
        row: Row,
        lsn: Lsn,
    ) -> Result<(), ApplyError> {
        self.counts.inserts += 1;
        self.make_room(mapping).await?;
        let row_form = CopyForm::of(&row);
        let i = match self.run_of(mapping) {
            Some(i) if matches!(self.runs[i], Run::Insert { form, .. } if form == row_form) => i,
            other => {
                if let Some(i) = other {
                    self.end_run_at(i).await?;
                }
                self.runs.push(Run::Insert {
                    mapping: mapping.clone(),
                    form: row_form,
                    rows: Vec::new(),
                    lsns: Vec::new(),
                    copy: None,
                });
                self.runs.len() - 1
            }
        };
        let Run::Insert {
            form,
            rows,
            lsns,
            copy,
            ..
        } = &mut self.runs[i]
        else {
            unreachable!("an insert run")
        };
        // The rows stay with the COPY data, to name or set aside a row the destination refuses.
        match (copy.as_mut(), *form) {
            (Some(data), Some(form)) => form.encode(data, &row),
            (None, Some(form)) if rows.len() + 1 >= COPY_MIN_ROWS => {
                let mut data = form.start(64 << 10);
                for r in rows.iter().chain([&row]) {
                    form.encode(&mut data, r);
                }
                *copy = Some(data);
            }
            _ => {}
        }
        rows.push(row);
        lsns.push(lsn);
        if copy.as_ref().is_some_and(|d| d.len() >= MAX_COPY_BYTES) {
            self.end_run_at(i).await?;
        }
        Ok(())
    }

    async fn push_update(
        &mut self,
        mapping: &Arc<TableMapping>,
        new: Row,
        lsn: Lsn,
    ) -> Result<(), ApplyError> {
        let shape = statements::update_shape(mapping, &new);
        if !shape.iter().any(|&set| set) {
            return Ok(()); // only unchanged TOAST values: nothing to write
        }
        let key: Vec<Bytes> = mapping
            .key_indexes()
            .iter()
            .map(|&i| new[i].value().cloned().unwrap_or_default())
            .collect();
        self.make_room(mapping).await?;
        let i = match self.run_of(mapping) {
            Some(i) if matches!(&self.runs[i], Run::Update { shape: s, .. } if *s == shape) => i,
            other => {
                if let Some(i) = other {
                    self.end_run_at(i).await?;
                }
                self.runs.push(Run::Update {
                    mapping: mapping.clone(),
                    shape,
                    keys: HashMap::new(),
                    rows: Vec::new(),
                    lsns: Vec::new(),
                });
                self.runs.len() - 1
            }
        };
        let Run::Update {
            keys, rows, lsns, ..
        } = &mut self.runs[i]
        else {
            unreachable!("an update run")
        };
        match keys.get(&key) {
            // The same key again with the same columns: the later row replaces the earlier one.
            Some(&at) => {
                rows[at] = new;
                lsns[at] = lsn;
            }
            None => {
                keys.insert(key, rows.len());
                rows.push(new);
                lsns.push(lsn);
            }
        }
        if rows.len() >= MAX_DELETE_RUN {
            self.end_run_at(i).await?;
        }
        Ok(())
    }

    async fn push_delete(
        &mut self,
        mapping: &Arc<TableMapping>,
        old: Row,
        lsn: Lsn,
    ) -> Result<(), ApplyError> {
        self.counts.deletes += 1;
        let Some(key) = statements::single_key(mapping) else {
            self.end_table(mapping).await?;
            let built = statements::delete(mapping, &old).map_err(|m| unusable(mapping, &m))?;
            let carried = carry(mapping, Op::Delete, vec![carried_row(lsn, Some(old), None)]);
            return self.queue(mapping, built, carried, Some(1)).await;
        };
        self.make_room(mapping).await?;
        let i = match self.run_of(mapping) {
            Some(i) if matches!(self.runs[i], Run::Delete { .. }) => i,
            other => {
                if let Some(i) = other {
                    self.end_run_at(i).await?;
                }
                self.runs.push(Run::Delete {
                    mapping: mapping.clone(),
                    key,
                    olds: Vec::new(),
                    lsns: Vec::new(),
                });
                self.runs.len() - 1
            }
        };
        let Run::Delete { olds, lsns, .. } = &mut self.runs[i] else {
            unreachable!("a delete run")
        };
        olds.push(old);
        lsns.push(lsn);
        if olds.len() >= MAX_DELETE_RUN {
            self.end_run_at(i).await?;
        }
        Ok(())
    }

    /// Ends every open run, in the order they were opened.
    async fn end_run(&mut self) -> Result<(), ApplyError> {
        while !self.runs.is_empty() {
            self.end_run_at(0).await?;
        }
        Ok(())
    }

    /// Turns one gathered run into statements (or a COPY).
    async fn end_run_at(&mut self, i: usize) -> Result<(), ApplyError> {
        match self.runs.remove(i) {
            Run::Insert {
                mapping,
                form,
                rows,
                lsns,
                copy,
            } => {
                let carried = rows
                    .into_iter()
                    .zip(lsns)
                    .map(|(row, lsn)| carried_row(lsn, None, Some(row)));
                match copy.zip(form) {
                    Some((mut data, form)) => {
                        form.finish(&mut data);
                        let carried = carry(&mapping, Op::Insert, carried.collect());
                        self.copy(carried, form, data).await
                    }
                    None => {
                        for row in carried {
                            let built =
                                statements::insert(&mapping, row.new.as_ref().expect("new"));
                            let carried = carry(&mapping, Op::Insert, vec![row]);
                            self.queue(&mapping, built, carried, None).await?;
                        }
                        Ok(())
                    }
                }
            }
            Run::Update {
                mapping,
                shape,
                rows,
                lsns,
                ..
            } => self.end_updates(&mapping, &shape, rows, lsns).await,
            Run::Delete {
                mapping,
                key,
                olds,
                lsns,
            } => self.end_deletes(&mapping, key, olds, lsns).await,
        }
    }

    /// Queues a run of updates as one set-based statement over arrays, or, when its values fit
    /// no array parameter (binary values of an array type), as statements listing the rows in
    /// `VALUES`, a power of two of them each (so few distinct statements are prepared).
    async fn end_updates(
        &mut self,
        mapping: &Arc<TableMapping>,
        shape: &[bool],
        rows: Vec<Row>,
        lsns: Vec<Lsn>,
    ) -> Result<(), ApplyError> {
        let many = (rows.len() > 1)
            .then(|| statements::update_many(mapping, shape, &rows))
            .flatten();
        if let Some(built) = many {
            return self.queue_updates(mapping, built, rows, lsns).await;
        }
        let most = statements::values_rows_max(mapping, shape);
        let mut rest: Vec<(Row, Lsn)> = rows.into_iter().zip(lsns).collect();
        while !rest.is_empty() {
            let n = rest.len().min(most);
            let take = 1 << (usize::BITS - 1 - n.leading_zeros());
            let (rows, lsns): (Vec<Row>, Vec<Lsn>) = rest.drain(..take).unzip();
            let built = match take {
                1 => statements::update(mapping, None, &rows[0])
                    .map_err(|m| unusable(mapping, &m))?,
                _ => Some(statements::update_values(mapping, shape, &rows)),
            };
            if let Some(built) = built {
                self.queue_updates(mapping, built, rows, lsns).await?;
            }
        }
        Ok(())
    }

    /// Queues one update statement with the rows it writes.
    async fn queue_updates(
        &mut self,
        mapping: &Arc<TableMapping>,
        built: Built,
        rows: Vec<Row>,
        lsns: Vec<Lsn>,
    ) -> Result<(), ApplyError> {
        let n = rows.len() as u64;
        let rows = rows.into_iter().zip(lsns);
        let rows = rows.map(|(row, lsn)| carried_row(lsn, None, Some(row)));
        let carried = carry(mapping, Op::Update, rows.collect());
        self.queue(mapping, built, carried, Some(n)).await
    }

    /// Queues a run of deletes as one statement, or one per row when it is a single row or
    /// its keys fit no array parameter.
    async fn end_deletes(
        &mut self,
        mapping: &Arc<TableMapping>,
        key: usize,
        olds: Vec<Row>,
        lsns: Vec<Lsn>,
    ) -> Result<(), ApplyError> {
        let many = match olds.len() {
            1 => None,
            _ => statements::delete_many(mapping, key, &olds).map_err(|m| unusable(mapping, &m))?,
        };
        let Some(built) = many else {
            for (old, lsn) in olds.into_iter().zip(lsns) {
                let built = statements::delete(mapping, &old).map_err(|m| unusable(mapping, &m))?;
                let carried = carry(mapping, Op::Delete, vec![carried_row(lsn, Some(old), None)]);
                self.queue(mapping, built, carried, Some(1)).await?;
            }
            return Ok(());
        };
        let n = olds.len() as u64;
        let olds = olds.into_iter().zip(lsns);
        let olds = olds.map(|(old, lsn)| carried_row(lsn, Some(old), None));
        let carried = carry(mapping, Op::Delete, olds.collect());
        self.queue(mapping, built, carried, Some(n)).await
    }

    async fn copy(
        &mut self,
        carried: Carried,
        form: CopyForm,
        data: BytesMut,
    ) -> Result<(), ApplyError> {
        self.send_pipeline().await?;
        let sql = form.sql(&carried.mapping);
        let begin = std::mem::take(&mut self.need_begin);
        self.writer
            .send(Job::Copy {
                begin,
                sql,
                data: data.freeze(),
                carried,
            })
            .await
    }

    /// Queues SQL for the simple protocol (BEGIN first if it has not gone out yet).
    pub(super) async fn send_sql(
        &mut self,
        table: &TableName,
        sql: String,
    ) -> Result<(), ApplyError> {
        let begin = std::mem::take(&mut self.need_begin);
        self.writer
            .send(Job::Sql {
                begin,
                sql,
                table: table.clone(),
            })
            .await
    }

    /// Queues the gathered statements as one burst, BEGIN first if needed.
    async fn send_pipeline(&mut self) -> Result<(), ApplyError> {
        if self.pipeline.is_empty() {
            return Ok(());
        }
        self.send_burst(None, None).await
    }

    /// Queues the gathered statements and COMMIT, ending the source transactions up to `lsn`;
    /// `applied` is recorded once the destination committed.
    async fn send_commit(&mut self, lsn: Lsn, applied: Option<Applied>) -> Result<(), ApplyError> {
        self.send_burst(Some(lsn), applied).await
    }

    async fn send_burst(
        &mut self,
        commit: Option<Lsn>,
        applied: Option<Applied>,
    ) -> Result<(), ApplyError> {
        let batch = std::mem::take(&mut self.pipeline);
        let begin = std::mem::take(&mut self.need_begin);
        self.writer
            .send(Job::Pipeline {
                begin,
                batch,
                commit,
                applied,
            })
            .await
    }
}

fn carry(mapping: &Arc<TableMapping>, op: Op, rows: Vec<CarriedRow>) -> Carried {
    Carried {
        mapping: mapping.clone(),
        op,
        rows,
    }
}

fn carried_row(lsn: Lsn, old: Option<Row>, new: Option<Row>) -> CarriedRow {
    CarriedRow { lsn, old, new }
}

fn unusable(m: &TableMapping, message: &str) -> ApplyError {
    ApplyError::Unusable {
        table: m.destination.to_string(),
        message: message.to_string(),
    }
}
