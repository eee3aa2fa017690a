//! The logical replication protocol on a `replication=database` connection:
//! IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT and START_REPLICATION with pgoutput.
//! Payloads are not decoded here; the stream yields raw XLogData.

mod lsn;
mod messages;
mod stream;

use std::time::Duration;

use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

pub use lsn::{Lsn, LsnParseError};
pub use messages::{
    parse_copy_data, pg_now, pg_time_to_system, status_update, Keepalive, ReplicationEvent,
    XLogData, STATUS_UPDATE_LEN,
};
pub use stream::{ReplicationStream, StandbyPositions};

use crate::conn::{Backend, Connection};
use crate::error::Error;

/// The answer to IDENTIFY_SYSTEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier (a 64-bit number, as text).
    pub system_id: String,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlogpos: Lsn,
    /// The database of this connection.
    pub dbname: Option<String>,
}

/// What CREATE_REPLICATION_SLOT does with the snapshot it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotAction {
    /// Export it for `SET TRANSACTION SNAPSHOT` (valid until the next command on this session).
    #[default]
    Export,
    /// Do not export it.
    NoExport,
    /// Use it in the current transaction of this session.
    Use,
}

/// Parameters of a new logical slot using pgoutput.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotOptions {
    /// The slot name.
    pub name: String,
    /// Drop the slot when the session ends.
    pub temporary: bool,
    /// What to do with the initial snapshot.
    pub snapshot: SnapshotAction,
    /// `FAILOVER`: standbys with `sync_replication_slots` keep a copy of the slot, so a
    /// promoted standby can continue it (PostgreSQL 17+; not for temporary slots).
    pub failover: bool,
}

/// The first `server_version_num` with failover slots.
pub const FAILOVER_VERSION_NUM: u32 = 170_000;

/// The answer to CREATE_REPLICATION_SLOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot name.
    pub slot_name: String,
    /// Where the slot's data becomes consistent: start replication here.
    pub consistent_point: Lsn,
    /// The exported snapshot (with [`SnapshotAction::Export`]).
    pub snapshot_name: Option<String>,
    /// The output plugin.
    pub output_plugin: Option<String>,
}

/// pgoutput's `streaming` option (large in-progress transactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Streaming {
    /// Send transactions when they commit.
    #[default]
    Off,
    /// Stream in-progress transactions (protocol 2+).
    On,
    /// Stream them for parallel apply (protocol 4+, PostgreSQL 16+).
    Parallel,
}

/// Parameters of START_REPLICATION and of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// The slot.
    pub slot: String,
    /// Where to start (usually the slot's confirmed position or the consistent point).
    pub start_lsn: Lsn,
    /// Publication names.
    pub publications: Vec<String>,
    /// The wished pgoutput protocol version; capped by the server version. `None`: the highest.
    pub proto_version: Option<u32>,
    /// pgoutput `binary 'true'`.
    pub binary: bool,
    /// pgoutput `messages 'true'` (logical decoding messages).
    pub messages: bool,
    /// pgoutput `streaming`.
    pub streaming: Streaming,
    /// How often to send standby status updates while nothing else triggers one.
    pub status_interval: Duration,
    /// How many events may wait for the caller before reading pauses.
    pub channel_capacity: usize,
    /// Read batching: after 16 messages, if under 8 KiB wait in the socket, pause this long.
    pub read_coalesce: Duration,
}

impl StartOptions {
    /// Defaults: latest protocol, text format, 10 s status interval, 2048 events, no coalescing.
    pub fn new(slot: impl Into<String>, start_lsn: Lsn, publications: Vec<String>) -> StartOptions {
        StartOptions {
            slot: slot.into(),
            start_lsn,
            publications,
            proto_version: None,
            binary: false,
            messages: false,
            streaming: Streaming::Off,
            status_interval: Duration::from_secs(10),
            channel_capacity: 2048,
            read_coalesce: Duration::ZERO,
        }
    }
}

/// The highest pgoutput protocol version a server supports.
pub fn max_proto_version(server_version_num: u32) -> u32 {
    match server_version_num {
        160_000.. => 4,
        150_000.. => 3,
        140_000.. => 2,
        _ => 1,
    }
}

/// The caller's wish capped by the server; the highest supported when there is no wish.
pub fn negotiate_proto_version(wish: Option<u32>, server_version_num: u32) -> u32 {
    let max = max_proto_version(server_version_num);
    wish.map_or(max, |wish| wish.clamp(1, max))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The CREATE_REPLICATION_SLOT command; PostgreSQL 15+ gets the parenthesised options, 17+
/// the `FAILOVER` option when asked for. A failover slot on an older server is refused.
pub fn create_slot_command(
    options: &SlotOptions,
    server_version_num: u32,
) -> Result<String, Error> {
    if options.failover && server_version_num < FAILOVER_VERSION_NUM {
        return Err(Error::Unsupported {
            feature: "FAILOVER",
            server_version_num,
            needs: 17,
        });
    }
    let temporary = if options.temporary { " TEMPORARY" } else { "" };
    let head = format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput",
        quote_ident(&options.name)
    );
    let (new, old) = match options.snapshot {
        SnapshotAction::Export => ("export", "EXPORT_SNAPSHOT"),
        SnapshotAction::NoExport => ("nothing", "NOEXPORT_SNAPSHOT"),
        SnapshotAction::Use => ("use", "USE_SNAPSHOT"),
    };
    let failover = if options.failover { ", FAILOVER" } else { "" };
    Ok(if server_version_num >= 150_000 {
        format!("{head} (SNAPSHOT '{new}'{failover})")
    } else {
        format!("{head} {old}")
    })
}

/// The ALTER_REPLICATION_SLOT command setting the slot's `failover` property (PostgreSQL 17+).
pub fn alter_slot_failover_command(
    name: &str,
    failover: bool,
    server_version_num: u32,
) -> Result<String, Error> {
    if server_version_num < FAILOVER_VERSION_NUM {
        return Err(Error::Unsupported {
            feature: "ALTER_REPLICATION_SLOT",
            server_version_num,
            needs: 17,
        });
    }
    Ok(format!(
        "ALTER_REPLICATION_SLOT {} (FAILOVER {failover})",
        quote_ident(name)
    ))
}

/// The START_REPLICATION command for pgoutput with protocol version `proto_version`.
pub fn start_replication_command(options: &StartOptions, proto_version: u32) -> String {
    let publications: Vec<String> = options
        .publications
        .iter()
        .map(|p| quote_ident(p))
        .collect();
    let mut args = vec![
        format!("proto_version '{proto_version}'"),
        format!(
            "publication_names {}",
            quote_literal(&publications.join(","))
        ),
    ];
    if options.binary {
        args.push("binary 'true'".into());
    }
    if options.messages {
        args.push("messages 'true'".into());
    }
    match options.streaming {
        Streaming::Off => {}
        Streaming::On => args.push("streaming 'on'".into()),
        Streaming::Parallel => args.push("streaming 'parallel'".into()),
    }
    format!(
        "START_REPLICATION SLOT {} LOGICAL {} ({})",
        quote_ident(&options.slot),
        options.start_lsn,
        args.join(", ")
    )
}

impl Connection {
    /// IDENTIFY_SYSTEM.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, Error> {
        let row = self.single_row("IDENTIFY_SYSTEM").await?;
        let text = |i: usize| row.get(i).cloned().flatten();
        Ok(SystemIdentity {
            system_id: text(0).unwrap_or_default(),
            timeline: text(1).and_then(|t| t.parse().ok()).unwrap_or_default(),
            xlogpos: parse_lsn(text(2))?,
            dbname: text(3),
        })
    }

    /// CREATE_REPLICATION_SLOT ... LOGICAL pgoutput.
    pub async fn create_replication_slot(
        &mut self,
        options: &SlotOptions,
    ) -> Result<CreatedSlot, Error> {
        let version = self.server_version_num().unwrap_or(0);
        let row = self
            .single_row(&create_slot_command(options, version)?)
            .await?;
        let text = |i: usize| row.get(i).cloned().flatten();
        Ok(CreatedSlot {
            slot_name: text(0).unwrap_or_default(),
            consistent_point: parse_lsn(text(1))?,
            snapshot_name: text(2),
            output_plugin: text(3),
        })
    }

    /// ALTER_REPLICATION_SLOT name (FAILOVER ...): whether standbys keep a copy of the slot
    /// (PostgreSQL 17+; the slot must not be in use).
    pub async fn alter_replication_slot_failover(
        &mut self,
        name: &str,
        failover: bool,
    ) -> Result<(), Error> {
        let version = self.server_version_num().unwrap_or(0);
        self.simple_query(&alter_slot_failover_command(name, failover, version)?)
            .await
            .map(drop)
    }

    /// DROP_REPLICATION_SLOT, optionally waiting for it to become inactive.
    pub async fn drop_replication_slot(&mut self, name: &str, wait: bool) -> Result<(), Error> {
        let wait = if wait { " WAIT" } else { "" };
        self.simple_query(&format!(
            "DROP_REPLICATION_SLOT {}{wait}",
            quote_ident(name)
        ))
        .await
        .map(drop)
    }

    /// START_REPLICATION: hands the session to a background task and returns the stream.
    pub async fn start_replication(
        mut self,
        options: StartOptions,
    ) -> Result<ReplicationStream, Error> {
        let version = self.server_version_num().unwrap_or(0);
        let proto_version = negotiate_proto_version(options.proto_version, version);
        frontend::query(
            &start_replication_command(&options, proto_version),
            self.write_buf(),
        )?;
        self.flush().await?;
        match self.recv().await? {
            Backend::CopyBothResponse => {
                Ok(ReplicationStream::spawn(self, &options, proto_version))
            }
            Backend::Message(Message::ErrorResponse(body)) => {
                Err(crate::conn::server_error(&body)?.into())
            }
            _ => Err(Error::Protocol(
                "expected CopyBothResponse after START_REPLICATION".into(),
            )),
        }
    }

    async fn single_row(&mut self, command: &str) -> Result<Vec<Option<String>>, Error> {
        let mut rows = self.query_rows(command).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(Error::Protocol(format!(
                "{command} returned {n} rows instead of one"
            ))),
        }
    }
}

fn parse_lsn(text: Option<String>) -> Result<Lsn, Error> {
    let text = text.ok_or_else(|| Error::Protocol("missing LSN".into()))?;
    text.parse()
        .map_err(|e: LsnParseError| Error::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests;
