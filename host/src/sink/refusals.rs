//! Rows the destination refuses (a constraint, a trigger, a value its column type rejects).
//!
//! Every queued statement and COPY carries the rows it writes ([`Carried`]), with the source
//! transaction of each. When one is refused, the rows are tried again one by one, each under a
//! savepoint, halving the failing part each time, so only the refused rows are found. Under
//! `on_apply_error = "dead_letter"` this happens in the open destination transaction and each
//! refused row goes to `pgmorph.dead_letters` in it; under `stop` it happens in a transaction
//! that is rolled back, only to name the first refused row in the error.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, Statement};

use super::dead_letters;
use super::error::{failed, ApplyError};
use super::params::Param;
use super::statements::{self, Built};
use super::writer::Queued;
use crate::model::{Lsn, Op, Row, TableMapping, TableName};

/// Streams `data` into `COPY ... FROM STDIN`.
pub(crate) async fn copy_in(
    client: &Client,
    sql: &str,
    data: bytes::Bytes,
) -> Result<(), tokio_postgres::Error> {
    use futures_util::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await.map(|_| ())
}

/// The savepoint around a batch or a part of it.
const SAVEPOINT: &str = "SAVEPOINT pgmorph_rows";
const RELEASE: &str = "RELEASE SAVEPOINT pgmorph_rows";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT pgmorph_rows; RELEASE SAVEPOINT pgmorph_rows";

/// The rows one statement or COPY writes.
pub(crate) struct Carried {
    /// Their table.
    pub mapping: Arc<TableMapping>,
    /// Their change.
    pub op: Op,
    /// The rows, in order.
    pub rows: Vec<CarriedRow>,
}

/// One row of a [`Carried`] set, with its source transaction.
pub(crate) struct CarriedRow {
    /// Final LSN of the source transaction the change belongs to.
    pub lsn: Lsn,
    /// The old row (key) of an update that changes the key, or of a delete.
    pub old: Option<Row>,
    /// The new row of an insert or update.
    pub new: Option<Row>,
}

impl Carried {
    /// One row's change as its own statement.
    fn single(&self, row: &CarriedRow) -> Option<Built> {
        let m = &self.mapping;
        match (self.op, &row.old, &row.new) {
            (Op::Insert | Op::Snapshot, _, Some(new)) => Some(statements::insert(m, new)),
            (Op::Update, old, Some(new)) => statements::update(m, old.as_ref(), new).ok()?,
            (Op::Delete, Some(old), _) => statements::delete(m, old).ok(),
            _ => None,
        }
    }

    /// The row's key columns, or every column for a table without a key.
    fn key(&self, row: &CarriedRow) -> serde_json::Value {
        let keyed = self.mapping.columns.iter().any(|c| c.is_key);
        match row.old.as_ref().or(row.new.as_ref()) {
            Some(r) if keyed => self.mapping.key_json(r),
            Some(r) => self.mapping.row_json(r),
            None => serde_json::Value::Null,
        }
    }
}

/// A refusal, with the row named when it is known.
#[derive(Debug)]
pub struct Refusal {
    /// The destination table.
    pub table: String,
    /// The change refused.
    pub op: &'static str,
    /// The refused row's key as JSON, or how many rows the refused statement held.
    pub key: String,
    /// Final LSN of the source transaction of the refused row (of the first row when the row
    /// is not known).
    pub lsn: Lsn,
    /// The constraint named by the destination, if any.
    pub constraint: Option<String>,
    /// The SQLSTATE.
    pub sqlstate: String,
    /// The destination's message (its first line).
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "destination table {} refused the {} of {} from the source transaction at {}: {} (",
            self.table, self.op, self.key, self.lsn, self.message
        )?;
        if let Some(c) = &self.constraint {
            write!(f, "constraint {c}, ")?;
        }
        write!(f, "SQLSTATE {})", self.sqlstate)
    }
}

/// The destination's error when it refuses the data itself: integrity constraints (class 23),
/// data exceptions such as a value its type rejects (22), a trigger raising an error (P0, 09,
/// 27), a view's check option (44). Other errors (connections, resources, a missing column)
/// are not about one row.
pub(crate) fn refusal(e: &tokio_postgres::Error) -> Option<&DbError> {
    let db = e.as_db_error()?;
    let code = db.code().code();
    ["22", "23", "27", "44", "P0", "09"]
        .iter()
        .any(|class| code.starts_with(class))
        .then_some(db)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

fn refused(carried: &Carried, row: Option<&CarriedRow>, db: &DbError) -> ApplyError {
    let first = row.or(carried.rows.first());
    let key = match row {
        Some(r) => carried.key(r).to_string(),
        None => format!("one of {} rows", carried.rows.len()),
    };
    ApplyError::Refused(Box::new(Refusal {
        table: carried.mapping.destination.to_string(),
        op: carried.op.as_str(),
        key,
        lsn: first.map_or(Lsn::ZERO, |r| r.lsn),
        constraint: db.constraint().map(str::to_string),
        sqlstate: db.code().code().to_string(),
        message: first_line(db.message()),
    }))
}

/// The error for a refused statement under `stop`: the first row refused when the statement's
/// rows are replayed alone under savepoints (in a transaction rolled back afterwards), or the
/// statement's rows when none is refused alone. The open transaction is ended.
pub(crate) async fn name_refused(
    client: &Client,
    carried: &Carried,
    error: tokio_postgres::Error,
) -> ApplyError {
    let Some(db) = refusal(&error) else {
        return failed(&carried.mapping.destination)(error);
    };
    if carried.rows.len() == 1 {
        return refused(carried, carried.rows.first(), db);
    }
    let row = match client.batch_execute("ROLLBACK; BEGIN").await {
        Ok(()) => first_refused(client, carried).await,
        Err(_) => None,
    };
    let _ = client.batch_execute("ROLLBACK").await;
    match row {
        Some((i, e)) => match refusal(&e) {
            Some(db) => refused(carried, carried.rows.get(i), db),
            None => refused(carried, None, db),
        },
        None => refused(carried, None, db),
    }
}

/// The index of the first row refused alone, and its error.
async fn first_refused(
    client: &Client,
    carried: &Carried,
) -> Option<(usize, tokio_postgres::Error)> {
    for (i, row) in carried.rows.iter().enumerate() {
        let built = carried.single(row)?;
        let stmt = client.prepare(&built.sql).await.ok()?;
        let piece = [Piece::Row(stmt, built.params)];
        match try_pieces(client, &[], &piece).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if refusal(&e).is_some() => return Some((i, e)),
            _ => return None,
        }
    }
    None
}

/// What runs under one savepoint: a statement of the batch as it is, or one row of one.
enum Piece {
    Statement(usize),
    Row(Statement, Vec<Param>),
}

/// Runs `pieces` under a savepoint, pipelined. The outer error: the savepoint could not be
/// rolled back to (the connection is gone); the inner one: the first piece's error, after
/// which the transaction is back at the savepoint.
async fn try_pieces(
    client: &Client,
    batch: &[Queued],
    pieces: &[Piece],
) -> Result<Result<(), tokio_postgres::Error>, tokio_postgres::Error> {
    let run = pieces.iter().map(|p| async move {
        match p {
            Piece::Statement(i) => {
                let q = &batch[*i];
                client.execute_raw(&q.stmt, q.params.iter()).await
            }
            Piece::Row(stmt, params) => client.execute_raw(stmt, params.iter()).await,
        }
    });
    let (begin, results, end) = tokio::join!(
        client.batch_execute(SAVEPOINT),
        join_all(run),
        client.batch_execute(RELEASE)
    );
    let first = begin
        .err()
        .or_else(|| results.into_iter().find_map(Result::err))
        .or(end.err());
    match first {
        None => Ok(Ok(())),
        Some(e) => {
            client.batch_execute(ROLLBACK_TO).await?;
            Ok(Err(e))
        }
    }
}

/// A part of a batch to run under a savepoint: statements of the batch, or rows of one
/// carried set.
enum Part<'c> {
    Statements(Range<usize>),
    Rows(&'c Carried, Range<usize>),
}

/// Sets refused rows aside under `on_apply_error = "dead_letter"`, in the open transaction.
pub(crate) struct SetAside<'a> {
    /// The apply connection, inside the open transaction.
    pub client: &'a Client,
    /// The connector, for the dead-letter rows.
    pub connector: &'a str,
}

impl SetAside<'_> {
    /// Runs `batch` in the open transaction with only its refused rows left out (each goes to
    /// the dead-letter table); fails on anything else. The transaction must be clean (rolled
    /// back to before the batch) when this starts.
    async fn batch(&self, batch: &[Queued]) -> Result<(), ApplyError> {
        self.parts(batch, Part::Statements(0..batch.len())).await
    }

    /// Runs a burst of statements under a savepoint, pipelined (BEGIN first when `begin`);
    /// when the destination refuses some of their rows, runs them again without those.
    /// Returns each statement's row count when none was refused (else none).
    pub async fn burst(&self, begin: bool, batch: &[Queued]) -> Result<Vec<u64>, ApplyError> {
        let client = self.client;
        let state = state_table();
        let open = if begin { "BEGIN; " } else { "" };
        let savepoint = format!("{open}{SAVEPOINT}");
        let (opened, results, released) = tokio::join!(
            client.batch_execute(&savepoint),
            join_all(
                batch
                    .iter()
                    .map(|q| client.execute_raw(&q.stmt, q.params.iter()))
            ),
            client.batch_execute(RELEASE)
        );
        opened.map_err(failed(&state))?;
        let first = results.iter().position(Result::is_err);
        let error = match (first, released) {
            (None, Ok(())) => return Ok(results.into_iter().map(|r| r.unwrap_or(0)).collect()),
            (None, Err(e)) => return Err(failed(&state)(e)),
            (Some(i), _) => (i, results.into_iter().nth(i).and_then(Result::err)),
        };
        if let (i, Some(e)) = error {
            if refusal(&e).is_none() {
                return Err(failed(&batch[i].table)(e));
            }
        }
        client
            .batch_execute(ROLLBACK_TO)
            .await
            .map_err(failed(&state))?;
        self.batch(batch).await?;
        Ok(Vec::new())
    }

    /// Runs `COPY` under a savepoint; when the destination refuses some of its rows, inserts
    /// them again one by one without those.
    pub async fn copy(
        &self,
        sql: &str,
        data: bytes::Bytes,
        carried: &Carried,
    ) -> Result<(), ApplyError> {
        let table = &carried.mapping.destination;
        self.client
            .batch_execute(SAVEPOINT)
            .await
            .map_err(failed(table))?;
        let error = match copy_in(self.client, sql, data).await {
            Ok(()) => {
                return self
                    .client
                    .batch_execute(RELEASE)
                    .await
                    .map_err(failed(table))
            }
            Err(e) => e,
        };
        if refusal(&error).is_none() {
            return Err(failed(table)(error));
        }
        self.client
            .batch_execute(ROLLBACK_TO)
            .await
            .map_err(failed(table))?;
        self.rows(carried).await
    }

    /// Runs the rows of a refused COPY one by one (halving the refused parts).
    async fn rows(&self, carried: &Carried) -> Result<(), ApplyError> {
        self.parts(&[], Part::Rows(carried, 0..carried.rows.len()))
            .await
    }

    async fn parts<'c>(&self, batch: &'c [Queued], first: Part<'c>) -> Result<(), ApplyError> {
        // A stack: the next part is the last one.
        let mut todo = vec![first];
        while let Some(part) = todo.pop() {
            let pieces = self.pieces(&part).await?;
            let error = match try_pieces(self.client, batch, &pieces).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => return Err(failed(&state_table())(e)),
            };
            let Some(db) = refusal(&error) else {
                return Err(unrefused(batch, &part, error));
            };
            match part {
                Part::Statements(r) if r.len() > 1 => split(&mut todo, r, Part::Statements),
                Part::Statements(r) => match &batch[r.start].carried {
                    Some(c) => todo.push(Part::Rows(c, 0..c.rows.len())),
                    None => {
                        let table = &batch[r.start].table;
                        return Err(failed(table)(error));
                    }
                },
                Part::Rows(c, r) if r.len() > 1 => split(&mut todo, r, |r| Part::Rows(c, r)),
                Part::Rows(c, r) => self.set_aside(c, &c.rows[r.start], db).await?,
            }
        }
        Ok(())
    }

    async fn pieces(&self, part: &Part<'_>) -> Result<Vec<Piece>, ApplyError> {
        let (carried, r) = match part {
            Part::Statements(r) => return Ok(r.clone().map(Piece::Statement).collect()),
            Part::Rows(c, r) => (c, r),
        };
        let mut pieces = Vec::with_capacity(r.len());
        for row in &carried.rows[r.clone()] {
            let Some(built) = carried.single(row) else {
                continue;
            };
            let table = &carried.mapping.destination;
            let stmt = self
                .client
                .prepare(&built.sql)
                .await
                .map_err(failed(table))?;
            pieces.push(Piece::Row(stmt, built.params));
        }
        Ok(pieces)
    }

    /// Writes one refused row to the dead-letter table and counts it.
    async fn set_aside(
        &self,
        carried: &Carried,
        row: &CarriedRow,
        db: &DbError,
    ) -> Result<(), ApplyError> {
        let m = &carried.mapping;
        let key = carried.key(row);
        tracing::warn!(
            table = %m.destination,
            op = carried.op.as_str(),
            key = %key,
            lsn = %row.lsn,
            sqlstate = db.code().code(),
            error = db.message(),
            "the destination refused a row: it goes to the dead-letter table"
        );
        let letter = dead_letters::Refused {
            connector: self.connector,
            table: &m.source.name.to_string(),
            op: carried.op.as_str(),
            lsn: &row.lsn.to_string(),
            error: &first_line(db.message()),
            sqlstate: db.code().code(),
            row: &m.change_json(row.old.as_ref(), row.new.as_ref()),
            key: &key,
        };
        let state = state_table();
        let name = [Param::from(self.connector.to_string())];
        let params = letter.params();
        let (inserted, counted) = tokio::join!(
            self.client
                .execute_raw(dead_letters::INSERT_REFUSED, params.iter()),
            self.client
                .execute_raw(crate::state::store_sql::DEAD_LETTERED, name.iter())
        );
        inserted.map_err(failed(&state))?;
        counted.map_err(failed(&state))?;
        Ok(())
    }
}

/// Pushes the two halves of `r`, first half on top.
fn split<'c>(todo: &mut Vec<Part<'c>>, r: Range<usize>, part: impl Fn(Range<usize>) -> Part<'c>) {
    let mid = r.start + r.len() / 2;
    todo.push(part(mid..r.end));
    todo.push(part(r.start..mid));
}

/// The error of a part that failed for another reason than a refused row.
fn unrefused(batch: &[Queued], part: &Part<'_>, error: tokio_postgres::Error) -> ApplyError {
    match part {
        Part::Statements(r) => failed(&batch[r.start].table)(error),
        Part::Rows(c, _) => failed(&c.mapping.destination)(error),
    }
}

fn state_table() -> TableName {
    TableName::new("pgmorph", "state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_table_row_lsn_constraint_and_sqlstate() {
        let r = Refusal {
            table: "shop.items".into(),
            op: "insert",
            key: r#"{"id":"7"}"#.into(),
            lsn: Lsn(0x1504A08),
            constraint: Some("nonneg".into()),
            sqlstate: "23514".into(),
            message: "new row violates check constraint \"nonneg\"".into(),
        };
        let text = r.to_string();
        for part in [
            "shop.items",
            r#"the insert of {"id":"7"}"#,
            "at 0/1504A08",
            "(constraint nonneg, SQLSTATE 23514)",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let r = Refusal {
            constraint: None,
            ..r
        };
        assert!(r.to_string().ends_with("(SQLSTATE 23514)"));
    }

    #[test]
    fn a_refused_part_is_split_in_halves_first_half_next() {
        let mut todo = Vec::new();
        split(&mut todo, 3..8, Part::Statements);
        let ranges: Vec<Range<usize>> = todo
            .into_iter()
            .rev()
            .map(|p| match p {
                Part::Statements(r) => r,
                Part::Rows(..) => unreachable!("statements only"),
            })
            .collect();
        assert_eq!(ranges, [3..5, 5..8]);
    }
}
