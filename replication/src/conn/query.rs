//! The simple query protocol: text rows and command tags.

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;

use super::{server_error, Backend, Connection};
use crate::error::Error;

/// One statement's result from a simple query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Column names (empty for statements without rows).
    pub columns: Vec<String>,
    /// Rows of text values; `None` is SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// The command tag, e.g. `INSERT 0 3` or `IDENTIFY_SYSTEM`.
    pub tag: String,
}

impl Connection {
    /// Runs `sql` (one or more statements) with the simple query protocol. On an error
    /// the rest of the answer is read up to ReadyForQuery, so the session stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>, Error> {
        frontend::query(sql, self.write_buf())?;
        self.flush().await?;
        let mut results = Vec::new();
        let mut current = QueryResult::default();
        let mut failure = None;
        loop {
            match self.recv().await? {
                Backend::Message(Message::RowDescription(body)) => {
                    current.columns = body.fields().map(|f| Ok(f.name().to_owned())).collect()?;
                }
                Backend::Message(Message::DataRow(body)) => current.rows.push(text_row(&body)?),
                Backend::Message(Message::CommandComplete(body)) => {
                    current.tag = body.tag()?.to_owned();
                    results.push(std::mem::take(&mut current));
                }
                Backend::Message(Message::EmptyQueryResponse) => {}
                Backend::Message(Message::ErrorResponse(body)) => {
                    failure = Some(server_error(&body)?)
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                _ => {
                    return Err(Error::Protocol(format!(
                        "unexpected message in the answer to {sql:?}"
                    )))
                }
            }
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(results),
        }
    }

    /// The rows of the last statement in `sql`.
    pub async fn query_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        Ok(self
            .simple_query(sql)
            .await?
            .pop()
            .map(|r| r.rows)
            .unwrap_or_default())
    }
}

fn text_row(body: &DataRowBody) -> Result<Vec<Option<String>>, Error> {
    let buffer = body.buffer();
    let mut values = Vec::new();
    let mut ranges = body.ranges();
    while let Some(range) = ranges.next()? {
        let value = match range {
            Some(range) => Some(
                std::str::from_utf8(&buffer[range])
                    .map_err(|_| Error::Protocol("a text value is not UTF-8".into()))?
                    .to_owned(),
            ),
            None => None,
        };
        values.push(value);
    }
    Ok(values)
}
