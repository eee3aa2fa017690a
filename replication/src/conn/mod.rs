//! The wire connection: socket, startup, authentication, simple queries, and a read
//! buffer that parses many backend messages per read.

mod auth;
mod open;
mod query;
mod stream;

use std::collections::HashMap;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use auth::AuthMethod;
pub use query::QueryResult;
pub(crate) use stream::PgStream;

use crate::error::{Error, ServerError};

/// Initial read buffer size; a read syscall can bring in this much at once.
const READ_BUFFER: usize = 64 * 1024;

/// What to ask for in the startup packet, and socket options.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Send `replication=database` (a logical replication walsender session).
    pub replication: bool,
    /// Further startup parameters (e.g. `("DateStyle", "ISO")`).
    pub parameters: Vec<(String, String)>,
    /// SO_RCVBUF for TCP, set before connecting (bigger windows for WAL streaming).
    pub receive_buffer: Option<u32>,
}

/// A message from the server as this crate sees it.
pub(crate) enum Backend {
    /// Any message postgres-protocol parses.
    Message(Message),
    /// `CopyBothResponse` ('W'), which postgres-protocol does not know.
    CopyBothResponse,
}

/// An authenticated session with a PostgreSQL server.
pub struct Connection {
    stream: PgStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    parameters: HashMap<String, String>,
    backend_key: Option<(i32, i32)>,
    auth: AuthMethod,
    endpoint: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.is_tls())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(stream: PgStream, endpoint: String) -> Connection {
        Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_BUFFER),
            write_buf: BytesMut::new(),
            parameters: HashMap::new(),
            backend_key: None,
            auth: AuthMethod::Trust,
            endpoint,
        }
    }

    /// A `ParameterStatus` value reported by the server (e.g. `server_version`).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server version as `server_version_num` (e.g. 150004), from `server_version`.
    pub fn server_version_num(&self) -> Option<u32> {
        self.parameter("server_version")
            .and_then(parse_server_version)
    }

    /// The process ID and secret key from `BackendKeyData`.
    pub fn backend_key(&self) -> Option<(i32, i32)> {
        self.backend_key
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, PgStream::Tls(_))
    }

    /// How the session authenticated.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth
    }

    /// `user@host:port/db` of the endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends Terminate and closes the socket.
    pub async fn close(mut self) -> Result<(), Error> {
        frontend::terminate(&mut self.write_buf);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    pub(crate) fn stream(&self) -> &PgStream {
        &self.stream
    }

    pub(crate) fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// Bytes received but not yet parsed.
    pub(crate) fn unparsed(&self) -> usize {
        self.read_buf.len()
    }

    /// Writes out everything queued in the write buffer.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        self.stream.flush().await?;
        Ok(())
    }

    /// The next message, reading from the socket as needed. Cancel-safe: a cancelled
    /// call loses nothing (the only await is a read into the buffer).
    pub(crate) async fn recv(&mut self) -> Result<Backend, Error> {
        loop {
            if let Some(message) = self.try_recv()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    /// The next message if the buffer holds a complete one. Notices are logged and
    /// ParameterStatus values recorded on the way.
    pub(crate) fn try_recv(&mut self) -> Result<Option<Backend>, Error> {
        loop {
            let Some(message) = self.parse_one()? else {
                return Ok(None);
            };
            match message {
                Backend::Message(Message::NoticeResponse(body)) => log_notice(&body),
                Backend::Message(Message::ParameterStatus(body)) => {
                    self.parameters
                        .insert(body.name()?.to_owned(), body.value()?.to_owned());
                }
                Backend::Message(Message::NotificationResponse(_)) => {}
                other => return Ok(Some(other)),
            }
        }
    }

    fn parse_one(&mut self) -> Result<Option<Backend>, Error> {
        if self.read_buf.len() >= 5 && self.read_buf[0] == b'W' {
            let len = u32::from_be_bytes([
                self.read_buf[1],
                self.read_buf[2],
                self.read_buf[3],
                self.read_buf[4],
            ]);
            let total = len as usize + 1;
            if self.read_buf.len() < total {
                return Ok(None);
            }
            self.read_buf.advance(total);
            return Ok(Some(Backend::CopyBothResponse));
        }
        Ok(Message::parse(&mut self.read_buf)?.map(Backend::Message))
    }

    /// One read from the socket into the buffer; `Closed` at end of stream.
    pub(crate) async fn fill(&mut self) -> Result<(), Error> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_BUFFER / 4 {
            self.read_buf.reserve(READ_BUFFER);
        }
        match self.stream.read_buf(&mut self.read_buf).await? {
            0 => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// Reads up to ReadyForQuery, recording BackendKeyData; the first error wins.
    async fn wait_ready(&mut self) -> Result<(), Error> {
        loop {
            match self.recv().await? {
                Backend::Message(Message::ReadyForQuery(_)) => return Ok(()),
                Backend::Message(Message::BackendKeyData(body)) => {
                    self.backend_key = Some((body.process_id(), body.secret_key()));
                }
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(server_error(&body)?.into())
                }
                _ => {
                    return Err(Error::Protocol(
                        "unexpected message while waiting for ReadyForQuery".into(),
                    ))
                }
            }
        }
    }
}

/// Builds a [`ServerError`] from an `ErrorResponse`/`NoticeResponse` body.
pub(crate) fn server_error(
    body: &postgres_protocol::message::backend::ErrorResponseBody,
) -> Result<ServerError, Error> {
    fields_to_error(body.fields())
}

fn fields_to_error(
    mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
) -> Result<ServerError, Error> {
    use fallible_iterator::FallibleIterator;
    let mut pairs = Vec::new();
    while let Some(field) = fields.next()? {
        pairs.push((
            field.type_(),
            String::from_utf8_lossy(field.value_bytes()).into_owned(),
        ));
    }
    Ok(ServerError::from_fields(
        pairs.iter().map(|(k, v)| (*k, v.as_str())),
    ))
}

fn log_notice(body: &postgres_protocol::message::backend::NoticeResponseBody) {
    match fields_to_error(body.fields()) {
        Ok(notice) if notice.severity == "WARNING" => {
            tracing::warn!(code = %notice.code, "server warning: {}", notice.message)
        }
        Ok(notice) => tracing::info!(
            severity = %notice.severity,
            code = %notice.code,
            "server notice: {}",
            notice.message
        ),
        Err(error) => tracing::warn!(%error, "unreadable server notice"),
    }
}

/// "15.4 (Debian 15.4-1)" → 150004; "9.6.24" → 90624; "17beta1" → 170000.
pub(crate) fn parse_server_version(version: &str) -> Option<u32> {
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_server_version;

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.4 (Debian 15.4-1.pgdg120+1)"),
            Some(150004)
        );
        assert_eq!(parse_server_version("16.0"), Some(160000));
        assert_eq!(parse_server_version("17beta1"), Some(170000));
        assert_eq!(parse_server_version("9.6.24"), Some(90624));
        assert_eq!(parse_server_version("devel"), None);
    }
}
