//! Applying changes on the destination: one destination transaction per source transaction,
//! inserts batched into COPY, updates and deletes pipelined, progress written before COMMIT.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{future::try_join_all, SinkExt};
use tokio_postgres::{Client, Statement};

use super::params::TextParam;
use crate::copy_text;
use crate::model::{quote_ident, Cell, Op, RowChange, TableMapping, TableName};
use crate::pipeline::transform::DeadLetter;
use crate::state::{Progress, TxCounts};

/// Inserts buffered before a COPY is sent.
const MAX_COPY_BYTES: usize = 4 << 20;
/// Updates and deletes sent in one pipelined burst.
const MAX_PIPELINE: usize = 512;

/// Applying to the destination failed; nothing of the open transaction is committed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A statement failed.
    #[error("applying to destination table {table} failed: {source}")]
    Statement {
        /// The destination table (or `pgmorph.state`).
        table: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// A change could not be expressed as SQL.
    #[error("cannot apply a change to {table}: {message}")]
    Unusable {
        /// The destination table.
        table: String,
        /// Why.
        message: String,
    },
}

fn failed(table: &TableName) -> impl FnOnce(tokio_postgres::Error) -> ApplyError + '_ {
    move |source| ApplyError::Statement {
        table: table.to_string(),
        source,
    }
}

struct PendingCopy {
    mapping: Arc<TableMapping>,
    data: BytesMut,
}

/// The destination connection used for applying changes.
pub struct Sink {
    client: Client,
    connector: String,
    statements: HashMap<String, Statement>,
    in_tx: bool,
    copy: Option<PendingCopy>,
    pipeline: Vec<(Statement, Vec<TextParam>, Arc<TableMapping>, Op)>,
    /// Counters of the open transaction.
    pub counts: TxCounts,
    /// Updates and deletes that found no row on the destination, since start.
    pub missing_rows: u64,
}

impl Sink {
    /// Wraps a destination connection.
    pub fn new(client: Client, connector: &str) -> Self {
        Self {
            client,
            connector: connector.to_string(),
            statements: HashMap::new(),
            in_tx: false,
            copy: None,
            pipeline: Vec::new(),
            counts: TxCounts::default(),
            missing_rows: 0,
        }
    }

    /// The SQL client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether a destination transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_tx
    }

    /// Opens the destination transaction if it is not open yet.
    pub async fn begin(&mut self) -> Result<(), ApplyError> {
        if !self.in_tx {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(failed(&TableName::new("pgmorph", "state")))?;
            self.in_tx = true;
            self.counts = TxCounts::default();
        }
        Ok(())
    }

    /// Runs DDL inside the open transaction (e.g. adding a column the source gained).
    pub async fn execute_ddl(&mut self, table: &TableName, sql: &str) -> Result<(), ApplyError> {
        self.flush().await?;
        self.begin().await?;
        self.client.batch_execute(sql).await.map_err(failed(table))
    }

    /// Applies changes of one table, in order.
    pub async fn apply(
        &mut self,
        mapping: &Arc<TableMapping>,
        changes: Vec<RowChange>,
    ) -> Result<(), ApplyError> {
        self.begin().await?;
        for change in changes {
            match change.op {
                Op::Insert | Op::Snapshot => self.push_insert(mapping, change).await?,
                Op::Update => self.push_update(mapping, change).await?,
                Op::Delete => self.push_delete(mapping, change).await?,
            }
        }
        Ok(())
    }

    /// Truncates destination tables.
    pub async fn truncate(&mut self, tables: &[TableName]) -> Result<(), ApplyError> {
        if tables.is_empty() {
            return Ok(());
        }
        self.flush().await?;
        self.begin().await?;
        let list: Vec<String> = tables.iter().map(TableName::quoted).collect();
        self.client
            .batch_execute(&format!("TRUNCATE {}", list.join(", ")))
            .await
            .map_err(failed(&tables[0]))?;
        self.counts.truncates += tables.len() as i64;
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
        self.flush().await?;
        self.begin().await?;
        let table = TableName::new("pgmorph", "dead_letters");
        let stmt = self
            .prepare(
                &table,
                "INSERT INTO pgmorph.dead_letters (connector, source_table, op, lsn, plugin, error, row_data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
            )
            .await?;
        for d in rows {
            let params = [
                self.connector.clone(),
                source.to_string(),
                d.op.as_str().to_string(),
                lsn.to_string(),
                d.plugin.clone(),
                d.error.clone(),
                d.row.to_string(),
            ];
            self.client
                .execute(
                    &stmt,
                    &[
                        &params[0], &params[1], &params[2], &params[3], &params[4], &params[5],
                        &params[6],
                    ],
                )
                .await
                .map_err(failed(&table))?;
        }
        self.counts.dead_lettered += rows.len() as i64;
        Ok(())
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), ApplyError> {
        self.flush_copy().await?;
        self.flush_pipeline().await
    }

    /// Writes progress and counters, then commits `transactions` source transactions applied
    /// in this destination transaction. Nothing happens if no transaction is open.
    pub async fn commit(&mut self, progress: Progress, transactions: i64) -> Result<(), ApplyError> {
        if !self.in_tx {
            return Ok(());
        }
        self.flush().await?;
        let state = TableName::new("pgmorph", "state");
        let p = self
            .prepare(&state, crate::state::store_sql::PROGRESS)
            .await?;
        let s = self.prepare(&state, crate::state::store_sql::STATS).await?;
        let c = self.counts;
        let offset = progress.to_json().to_string();
        let nums: Vec<String> = [
            c.inserts,
            c.updates,
            c.deletes,
            c.truncates,
            c.skipped,
            c.dead_lettered,
        ]
        .iter()
        .map(i64::to_string)
        .collect();
        let commit_us = (progress.commit_time + 946_684_800_000_000).to_string();
        let txs = transactions.to_string();
        let name = self.connector.clone();
        let progress_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&name, &offset];
        let stats_params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &name, &nums[0], &nums[1], &nums[2], &nums[3], &nums[4], &nums[5], &commit_us, &txs,
        ];
        let progress_fut = self.client.execute(&p, &progress_params);
        let stats_fut = self.client.execute(&s, &stats_params);
        let (a, b) = futures_util::future::join(progress_fut, stats_fut).await;
        a.map_err(failed(&state))?;
        b.map_err(failed(&state))?;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(failed(&state))?;
        self.in_tx = false;
        Ok(())
    }

    /// Runs DDL statements in a destination transaction of their own (no transaction may be
    /// open); on error nothing of them is kept.
    pub async fn run_ddl(&mut self, table: &TableName, statements: &[String]) -> Result<(), ApplyError> {
        debug_assert!(!self.in_tx, "DDL between transactions only");
        let mut sql = String::from("BEGIN;");
        for s in statements {
            sql.push_str(s);
            sql.push(';');
        }
        sql.push_str("COMMIT;");
        if let Err(e) = self.client.batch_execute(&sql).await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(failed(table)(e));
        }
        Ok(())
    }

    /// Abandons the open transaction.
    pub async fn rollback(&mut self) {
        self.copy = None;
        self.pipeline.clear();
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self.client.batch_execute("ROLLBACK").await {
                tracing::warn!(error = %e, "rollback on the destination failed");
            }
        }
    }

    async fn prepare(&mut self, table: &TableName, sql: &str) -> Result<Statement, ApplyError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(failed(table))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    async fn push_insert(
        &mut self,
        mapping: &Arc<TableMapping>,
        change: RowChange,
    ) -> Result<(), ApplyError> {
        let Some(row) = change.new else {
            return Err(ApplyError::Unusable {
                table: mapping.destination.to_string(),
                message: "an insert without a new row".into(),
            });
        };
        let same = matches!(&self.copy, Some(p) if Arc::ptr_eq(&p.mapping, mapping));
        if !same {
            self.flush().await?;
            self.copy = Some(PendingCopy {
                mapping: mapping.clone(),
                data: BytesMut::with_capacity(64 << 10),
            });
        }
        let pending = self.copy.as_mut().expect("set above");
        copy_text::encode_row(&mut pending.data, &row);
        self.counts.inserts += 1;
        if pending.data.len() >= MAX_COPY_BYTES {
            self.flush_copy().await?;
        }
        Ok(())
    }

    async fn flush_copy(&mut self) -> Result<(), ApplyError> {
        let Some(pending) = self.copy.take() else {
            return Ok(());
        };
        let m = &pending.mapping;
        let cols: Vec<String> = m.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let sql = format!(
            "COPY {} ({}) FROM STDIN",
            m.destination.quoted(),
            cols.join(", ")
        );
        let sink = self
            .client
            .copy_in::<_, Bytes>(&sql)
            .await
            .map_err(failed(&m.destination))?;
        futures_util::pin_mut!(sink);
        sink.send(pending.data.freeze())
            .await
            .map_err(failed(&m.destination))?;
        sink.finish().await.map_err(failed(&m.destination))?;
        Ok(())
    }

    async fn push_update(
        &mut self,
        mapping: &Arc<TableMapping>,
        change: RowChange,
    ) -> Result<(), ApplyError> {
        self.flush_copy().await?;
        let table = mapping.destination.clone();
        let new = change.new.ok_or_else(|| ApplyError::Unusable {
            table: table.to_string(),
            message: "an update without a new row".into(),
        })?;
        let old = change.old.as_ref().unwrap_or(&new);
        let mut sql = format!("UPDATE {} SET ", table.quoted());
        let mut params = Vec::new();
        let mut first = true;
        for (i, c) in mapping.columns.iter().enumerate() {
            match &new[i] {
                Cell::Unchanged => continue,
                cell => {
                    if !first {
                        sql.push_str(", ");
                    }
                    first = false;
                    params.push(param(cell));
                    sql.push_str(&format!("{} = ${}", quote_ident(&c.name), params.len()));
                }
            }
        }
        if first {
            // Only unchanged TOASTed columns: nothing to write.
            self.counts.updates += 1;
            return Ok(());
        }
        self.push_where(mapping, old, &mut sql, &mut params)?;
        let stmt = self.prepare(&table, &sql).await?;
        self.pipeline
            .push((stmt, params, mapping.clone(), Op::Update));
        self.counts.updates += 1;
        if self.pipeline.len() >= MAX_PIPELINE {
            self.flush_pipeline().await?;
        }
        Ok(())
    }

    async fn push_delete(
        &mut self,
        mapping: &Arc<TableMapping>,
        change: RowChange,
    ) -> Result<(), ApplyError> {
        self.flush_copy().await?;
        let table = mapping.destination.clone();
        let old = change.old.ok_or_else(|| ApplyError::Unusable {
            table: table.to_string(),
            message: "a delete without an old row".into(),
        })?;
        let mut sql = format!("DELETE FROM {}", table.quoted());
        let mut params = Vec::new();
        self.push_where(mapping, &old, &mut sql, &mut params)?;
        let stmt = self.prepare(&table, &sql).await?;
        self.pipeline
            .push((stmt, params, mapping.clone(), Op::Delete));
        self.counts.deletes += 1;
        if self.pipeline.len() >= MAX_PIPELINE {
            self.flush_pipeline().await?;
        }
        Ok(())
    }

    /// Appends the WHERE clause identifying `old`: key columns, or every sent column
    /// (compared as text, one row only) when the table has no key.
    fn push_where(
        &self,
        mapping: &TableMapping,
        old: &[Cell],
        sql: &mut String,
        params: &mut Vec<TextParam>,
    ) -> Result<(), ApplyError> {
        let keys = mapping.key_indexes();
        if !keys.is_empty() {
            sql.push_str(" WHERE ");
            for (n, &i) in keys.iter().enumerate() {
                if n > 0 {
                    sql.push_str(" AND ");
                }
                if !matches!(old[i], Cell::Text(_)) {
                    return Err(ApplyError::Unusable {
                        table: mapping.destination.to_string(),
                        message: format!("key column {} has no value", mapping.columns[i].name),
                    });
                }
                params.push(param(&old[i]));
                sql.push_str(&format!(
                    "{} = ${}",
                    quote_ident(&mapping.columns[i].name),
                    params.len()
                ));
            }
            return Ok(());
        }
        let mut conds = Vec::new();
        for (i, c) in mapping.columns.iter().enumerate() {
            if matches!(old[i], Cell::Unchanged) {
                continue;
            }
            params.push(param(&old[i]));
            conds.push(format!(
                "{}::text IS NOT DISTINCT FROM ${}::text",
                quote_ident(&c.name),
                params.len()
            ));
        }
        sql.push_str(&format!(
            " WHERE ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)",
            mapping.destination.quoted(),
            conds.join(" AND ")
        ));
        Ok(())
    }

    async fn flush_pipeline(&mut self) -> Result<(), ApplyError> {
        if self.pipeline.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pipeline);
        let client = &self.client;
        let results = try_join_all(batch.iter().map(|(stmt, params, m, _)| async move {
            client
                .execute_raw(stmt, params.iter())
                .await
                .map_err(failed(&m.destination))
        }))
        .await?;
        for (n, (_, _, m, op)) in results.iter().zip(batch.iter()) {
            if *n == 0 {
                self.missing_rows += 1;
                tracing::warn!(table = %m.destination, op = op.as_str(), "row to change not found on the destination");
            }
        }
        Ok(())
    }
}

fn param(cell: &Cell) -> TextParam {
    match cell {
        Cell::Text(b) => TextParam::Text(b.clone()),
        _ => TextParam::Null,
    }
}
