//! The replication connection: slot creation with an exported snapshot, and the change stream.

use std::time::Duration;

use bytes::Bytes;
use pgmorph_replication::{
    Connection, Error as WireError, ReplicationEvent, SlotOptions, SnapshotAction, StandbyPositions,
};

use super::pgoutput::{self, DecodeError, Message};
use crate::config::ConnectionSettings;
use crate::model::Lsn;

/// The replication connection failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The server refused the credentials (SQLSTATE 28P01 or 28000).
    #[error("authentication to the source failed for {who}: {message}")]
    Auth {
        /// `user@host:port/db`.
        who: String,
        /// The server's message.
        message: String,
    },
    /// The connection settings must change (TLS, the endpoint, a missing password).
    #[error("replication connection to {who}: {message}")]
    Settings {
        /// `user@host:port/db`.
        who: String,
        /// The error.
        message: String,
    },
    /// Any other transport or server error.
    #[error("replication connection to {who}: {message}")]
    Transport {
        /// `user@host:port/db`.
        who: String,
        /// The error.
        message: String,
        /// The server refused because another connection holds the slot (SQLSTATE 55006).
        slot_in_use: bool,
        /// The server's SQLSTATE; `None` for a connection that failed or closed.
        code: Option<String>,
    },
    /// The server answered something unexpected.
    #[error("unexpected answer from the source: {0}")]
    Protocol(String),
    /// A pgoutput message could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// How long [`ReplicationStream::open`] waits for a slot held by an ending connection.
pub const SLOT_BUSY_WAIT: Duration = Duration::from_secs(5);

impl StreamError {
    /// Whether the server refused because another connection still holds the slot
    /// (SQLSTATE 55006 object_in_use).
    pub fn slot_busy(&self) -> bool {
        matches!(
            self,
            StreamError::Transport {
                slot_in_use: true,
                ..
            }
        )
    }

    fn from_wire(settings: &ConnectionSettings, e: WireError) -> Self {
        let who = settings.describe();
        if e.is_auth_failure() {
            StreamError::Auth {
                who,
                message: e.to_string(),
            }
        } else if e.needs_settings_change() {
            StreamError::Settings {
                who,
                message: e.to_string(),
            }
        } else {
            StreamError::Transport {
                who,
                slot_in_use: e.slot_in_use(),
                code: e.code().map(str::to_owned),
                message: e.to_string(),
            }
        }
    }
}

/// One event of the change stream, decoded.
#[derive(Debug)]
pub enum StreamEvent {
    /// A transaction begins.
    Begin {
        /// The LSN of its commit record.
        final_lsn: Lsn,
        /// Transaction id.
        xid: u32,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// A change or relation description inside the transaction.
    Message(Message),
    /// The transaction commits.
    Commit {
        /// The commit record's LSN.
        lsn: Lsn,
        /// The end of the commit record: the position to acknowledge once applied.
        end_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// The server is alive; everything before `wal_end` has been sent.
    KeepAlive {
        /// The server's sent position.
        wal_end: Lsn,
    },
    /// A `pg_logical_emit_message` message.
    Logical {
        /// Its prefix.
        prefix: String,
        /// Its content.
        content: Bytes,
    },
    /// A block of an in-progress transaction's changes begins (`streaming`, protocol 2).
    StreamStart {
        /// The top-level transaction id.
        xid: u32,
        /// Whether this is its first block.
        first: bool,
    },
    /// A change, relation, type or message of the in-progress transaction whose block is open.
    Streamed {
        /// The (sub)transaction it belongs to.
        xid: u32,
        /// The message.
        message: Message,
    },
    /// The block ends.
    StreamStop,
    /// A streamed transaction commits.
    StreamCommit {
        /// The top-level transaction id.
        xid: u32,
        /// The end of the commit record: the position to acknowledge once applied.
        end_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01.
        commit_time: i64,
    },
    /// A streamed transaction (`subxid == xid`) or one of its subtransactions aborts.
    StreamAbort {
        /// The top-level transaction id.
        xid: u32,
        /// The aborted (sub)transaction.
        subxid: u32,
    },
}

/// A slot just created with an exported snapshot.
pub struct CreatedSlot {
    /// The position from which the slot's stream continues the snapshot.
    pub consistent_point: Lsn,
    /// The snapshot to import with `SET TRANSACTION SNAPSHOT` (valid while `stream` is idle).
    pub snapshot_name: String,
    /// The replication connection; call [`ReplicationStream::start`] once the copy is done.
    pub stream: ReplicationStream,
}

/// A replication connection on one slot and publication.
pub struct ReplicationStream {
    state: State,
    settings: ConnectionSettings,
    /// The positions reported to the server once streaming: write is the highest `wal_end`
    /// received, flush and apply the last acknowledged LSN.
    positions: Option<StandbyPositions>,
    /// Inside a block of an in-progress transaction (between Stream Start and Stop).
    in_stream: bool,
    /// The source sends values in binary form (pgoutput `binary`).
    binary: bool,
}

enum State {
    /// Connected, the slot created; START_REPLICATION from `start` comes with
    /// [`ReplicationStream::start`].
    Idle {
        conn: Box<Connection>,
        slot: String,
        publication: String,
        start: Lsn,
    },
    /// Streaming.
    Streaming(pgmorph_replication::ReplicationStream),
    /// Between the two, or after a failed start.
    Gone,
}

impl ReplicationStream {
    /// Creates `slot` with an exported snapshot on a fresh replication connection. The
    /// connection must run nothing else until the snapshot has been imported. A temporary slot
    /// disappears when the connection closes; a `failover` slot (PostgreSQL 17+) is kept by
    /// standbys that synchronize slots.
    pub async fn create_slot_with_snapshot(
        settings: &ConnectionSettings,
        slot: &str,
        publication: &str,
        temporary: bool,
        failover: bool,
    ) -> Result<CreatedSlot, StreamError> {
        let mut conn = settings
            .connect_replication(slot)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        let created = conn
            .create_replication_slot(&SlotOptions {
                name: slot.to_string(),
                temporary,
                snapshot: SnapshotAction::Export,
                failover,
            })
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        let snapshot_name = created.snapshot_name.ok_or_else(|| {
            StreamError::Protocol("CREATE_REPLICATION_SLOT exported no snapshot".into())
        })?;
        let consistent_point = Lsn::from(created.consistent_point);
        Ok(CreatedSlot {
            consistent_point,
            snapshot_name,
            stream: ReplicationStream {
                state: State::Idle {
                    conn: Box::new(conn),
                    slot: slot.to_string(),
                    publication: publication.to_string(),
                    start: consistent_point,
                },
                settings: settings.clone(),
                positions: None,
                in_stream: false,
                binary: false,
            },
        })
    }

    /// Sets the `failover` property of an existing, unused slot (PostgreSQL 17+), on a
    /// replication connection of its own.
    pub async fn set_failover(
        settings: &ConnectionSettings,
        slot: &str,
        failover: bool,
    ) -> Result<(), StreamError> {
        let mut conn = settings
            .connect_replication(slot)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        conn.alter_replication_slot_failover(slot, failover)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "replication connection close");
        }
        Ok(())
    }

    /// Opens the stream of `slot` from `start` (the last position applied on the destination;
    /// zero means the slot's confirmed position). A slot still held by a previous connection
    /// that is going away (a restart right after a stop or a crash) is waited for, up to
    /// [`SLOT_BUSY_WAIT`].
    pub async fn open(
        settings: &ConnectionSettings,
        slot: &str,
        publication: &str,
        start: Lsn,
    ) -> Result<Self, StreamError> {
        let deadline = tokio::time::Instant::now() + SLOT_BUSY_WAIT;
        loop {
            match Self::open_once(settings, slot, publication, start).await {
                Err(e) if e.slot_busy() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(
                        slot,
                        "the slot is still held by an ending connection; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(
        settings: &ConnectionSettings,
        slot: &str,
        publication: &str,
        start: Lsn,
    ) -> Result<Self, StreamError> {
        let conn = settings
            .connect_replication(slot)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        let mut stream = ReplicationStream {
            state: State::Idle {
                conn: Box::new(conn),
                slot: slot.to_string(),
                publication: publication.to_string(),
                start,
            },
            settings: settings.clone(),
            positions: None,
            in_stream: false,
            binary: false,
        };
        stream.start().await?;
        Ok(stream)
    }

    /// Starts streaming on a connection opened by [`Self::create_slot_with_snapshot`]
    /// (a no-op once streaming).
    pub async fn start(&mut self) -> Result<(), StreamError> {
        let State::Idle {
            conn,
            slot,
            publication,
            start,
        } = std::mem::replace(&mut self.state, State::Gone)
        else {
            return match self.state {
                State::Streaming(_) => Ok(()),
                _ => Err(StreamError::Protocol(
                    "the replication connection is gone".into(),
                )),
            };
        };
        let version = conn.server_version_num().unwrap_or(0);
        let options = self
            .settings
            .start_options(&slot, &publication, start, version);
        self.binary = options.binary;
        if options.binary {
            tracing::debug!("the stream sends values in binary form");
        }
        let stream = conn
            .start_replication(options)
            .await
            .map_err(|e| StreamError::from_wire(&self.settings, e))?;
        self.positions = Some(stream.positions());
        self.state = State::Streaming(stream);
        Ok(())
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        let State::Streaming(stream) = &mut self.state else {
            return Err(StreamError::Protocol(
                "the replication stream has not been started".into(),
            ));
        };
        let ev = stream
            .next()
            .await
            .map_err(|e| StreamError::from_wire(&self.settings, e))?;
        let Some(ev) = ev else { return Ok(None) };
        let received = |wal_end| {
            if let Some(p) = &self.positions {
                p.set_write(wal_end);
            }
        };
        let out = match ev {
            ReplicationEvent::XLogData(x) => {
                received(x.wal_end);
                let (xid, message) = pgoutput::decode_in(x.data, self.in_stream)?;
                self.in_stream = match message {
                    Message::StreamStart { .. } => true,
                    Message::StreamStop => false,
                    _ => self.in_stream,
                };
                event_of(xid, message)
            }
            ReplicationEvent::Keepalive(k) => {
                received(k.wal_end);
                StreamEvent::KeepAlive {
                    wal_end: k.wal_end.into(),
                }
            }
        };
        Ok(Some(out))
    }

    /// Whether the source sends values in binary form.
    pub fn sends_binary(&self) -> bool {
        self.binary
    }

    /// Whether the stream sends large transactions while they run (`streaming` on).
    pub fn streams_in_progress(&self) -> bool {
        self.settings.stream_in_progress
    }

    /// Reports that everything up to `lsn` is durably applied on the destination: flush and
    /// apply become `lsn`, write at least `lsn`.
    pub fn acknowledge(&self, lsn: Lsn) {
        if let Some(p) = &self.positions {
            let lsn = lsn.into();
            p.set_write(lsn);
            p.set_flush(lsn);
            p.set_apply(lsn);
        }
    }

    /// Ends the stream cleanly, sending a final status update.
    pub async fn shutdown(self) {
        let result = match self.state {
            State::Streaming(stream) => stream.shutdown().await,
            State::Idle { conn, .. } => conn.close().await,
            State::Gone => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "replication connection shutdown");
        }
    }
}

/// The event a decoded message makes; `xid` is set for messages inside a stream block.
fn event_of(xid: Option<u32>, message: Message) -> StreamEvent {
    if let Some(xid) = xid {
        return StreamEvent::Streamed { xid, message };
    }
    match message {
        Message::Begin {
            final_lsn,
            commit_time,
            xid,
        } => StreamEvent::Begin {
            final_lsn: Lsn(final_lsn),
            xid,
            commit_time,
        },
        Message::Commit {
            lsn,
            end_lsn,
            commit_time,
            ..
        } => StreamEvent::Commit {
            lsn: Lsn(lsn),
            end_lsn: Lsn(end_lsn),
            commit_time,
        },
        Message::LogicalMessage {
            prefix, content, ..
        } => StreamEvent::Logical { prefix, content },
        Message::StreamStart { xid, first } => StreamEvent::StreamStart { xid, first },
        Message::StreamStop => StreamEvent::StreamStop,
        Message::StreamCommit {
            xid,
            end_lsn,
            commit_time,
            ..
        } => StreamEvent::StreamCommit {
            xid,
            end_lsn: Lsn(end_lsn),
            commit_time,
        },
        Message::StreamAbort { xid, subxid } => StreamEvent::StreamAbort { xid, subxid },
        m => StreamEvent::Message(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_replication::ServerError;

    fn server_error(code: &str, message: &str) -> WireError {
        WireError::Server(ServerError::from_fields([
            (b'S', "ERROR"),
            (b'C', code),
            (b'M', message),
        ]))
    }

    #[test]
    fn errors_are_classified_by_sqlstate_only() {
        let settings = ConnectionSettings::from_url_with_env(
            "source",
            "postgres://u:pw@127.0.0.1/db",
            None,
            &|_| None,
        )
        .unwrap();
        let busy = server_error("55006", "replication slot \"s\" is active for PID 42");
        assert!(StreamError::from_wire(&settings, busy).slot_busy());
        // The same words with another code are not a busy slot.
        let other = server_error("XX000", "replication slot \"s\" is active for PID 42");
        assert!(!StreamError::from_wire(&settings, other).slot_busy());
        for code in ["28P01", "28000"] {
            let e = StreamError::from_wire(&settings, server_error(code, "no"));
            assert!(matches!(e, StreamError::Auth { .. }), "{code}: {e:?}");
        }
        // A message about passwords is not an authentication failure by itself.
        let e = StreamError::from_wire(&settings, server_error("42704", "password slot"));
        assert!(
            matches!(&e, StreamError::Transport { code: Some(c), .. } if c == "42704"),
            "{e:?}"
        );
        let closed = StreamError::from_wire(&settings, WireError::Closed);
        assert!(matches!(closed, StreamError::Transport { code: None, .. }));
        let missing = WireError::PasswordMissing {
            endpoint: "u@h".into(),
        };
        let e = StreamError::from_wire(&settings, missing);
        assert!(matches!(e, StreamError::Settings { .. }), "{e:?}");
        assert!(!e.to_string().contains(":pw@"));
    }
}
