//! The replication connection: slot creation with an exported snapshot, and the change stream.

use std::time::Duration;

use bytes::Bytes;
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationEvent};

use super::pgoutput::{self, DecodeError, Message};
use crate::config::ConnectionSettings;
use crate::model::Lsn;

/// The replication connection failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The server refused the credentials.
    #[error("authentication to the source failed for {who}: {message}")]
    Auth {
        /// `user@host:port/db`.
        who: String,
        /// The server's message.
        message: String,
    },
    /// Any other transport or server error.
    #[error("replication connection to {who}: {message}")]
    Transport {
        /// `user@host:port/db`.
        who: String,
        /// The error.
        message: String,
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
    /// Whether the server refused because another connection still holds the slot.
    pub fn slot_busy(&self) -> bool {
        matches!(self, StreamError::Transport { message, .. } if message.contains("is active for PID"))
    }

    fn from_wire(settings: &ConnectionSettings, e: PgWireError) -> Self {
        let who = settings.describe();
        if e.is_auth() || e.to_string().contains("28P01") || e.to_string().contains("password") {
            StreamError::Auth {
                who,
                message: e.to_string(),
            }
        } else {
            StreamError::Transport {
                who,
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
    client: ReplicationClient,
    settings: ConnectionSettings,
}

impl ReplicationStream {
    /// Creates `slot` with an exported snapshot on a fresh replication connection. The
    /// connection must run nothing else until the snapshot has been imported. A temporary slot
    /// disappears when the connection closes.
    pub async fn create_slot_with_snapshot(
        settings: &ConnectionSettings,
        slot: &str,
        publication: &str,
        temporary: bool,
    ) -> Result<CreatedSlot, StreamError> {
        let cfg = settings.replication_config(slot, publication);
        let mut client = ReplicationClient::connect_gated(cfg)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} {} LOGICAL pgoutput (SNAPSHOT 'export')",
                if temporary { "TEMPORARY" } else { "" }
            ))
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        let row = rows.first().ok_or_else(|| {
            StreamError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
        })?;
        let field = |i: usize| -> Result<String, StreamError> {
            row.get(i)
                .and_then(|v| v.as_ref())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| {
                    StreamError::Protocol(format!("CREATE_REPLICATION_SLOT field {i} missing"))
                })
        };
        let consistent_point: Lsn = field(1)?
            .parse()
            .map_err(|e| StreamError::Protocol(format!("{e}")))?;
        let snapshot_name = field(2)?;
        Ok(CreatedSlot {
            consistent_point,
            snapshot_name,
            stream: ReplicationStream {
                client,
                settings: settings.clone(),
            },
        })
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
        let cfg = settings
            .replication_config(slot, publication)
            .with_start_lsn(start.into());
        let mut client = ReplicationClient::connect(cfg)
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        client
            .wait_started()
            .await
            .map_err(|e| StreamError::from_wire(settings, e))?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    /// Starts streaming on a connection opened by [`Self::create_slot_with_snapshot`].
    pub async fn start(&mut self) -> Result<(), StreamError> {
        self.client
            .start()
            .await
            .map_err(|e| StreamError::from_wire(&self.settings, e))?;
        self.client
            .wait_started()
            .await
            .map_err(|e| StreamError::from_wire(&self.settings, e))
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        loop {
            let ev = self
                .client
                .recv()
                .await
                .map_err(|e| StreamError::from_wire(&self.settings, e))?;
            let Some(ev) = ev else { return Ok(None) };
            let out = match ev {
                ReplicationEvent::Begin {
                    final_lsn,
                    xid,
                    commit_time_micros,
                } => StreamEvent::Begin {
                    final_lsn: final_lsn.into(),
                    xid,
                    commit_time: commit_time_micros,
                },
                ReplicationEvent::Commit {
                    lsn,
                    end_lsn,
                    commit_time_micros,
                } => StreamEvent::Commit {
                    lsn: lsn.into(),
                    end_lsn: end_lsn.into(),
                    commit_time: commit_time_micros,
                },
                ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(data)? {
                    Message::Boundary(_) => continue,
                    m => StreamEvent::Message(m),
                },
                ReplicationEvent::KeepAlive { wal_end, .. } => StreamEvent::KeepAlive {
                    wal_end: wal_end.into(),
                },
                ReplicationEvent::Message {
                    prefix, content, ..
                } => StreamEvent::Logical { prefix, content },
                ReplicationEvent::StoppedAt { .. } => return Ok(None),
            };
            return Ok(Some(out));
        }
    }

    /// Reports that everything up to `lsn` is durably applied on the destination.
    pub fn acknowledge(&self, lsn: Lsn) {
        self.client.update_applied_lsn(lsn.into());
    }

    /// Ends the stream cleanly, sending a final status update.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.client.shutdown().await {
            tracing::debug!(error = %e, "replication connection shutdown");
        }
    }
}
