//! The CopyBoth sub-protocol of streaming replication: XLogData ('w') and primary
//! keepalive ('k') from the server, standby status updates ('r') from the client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use super::Lsn;
use crate::error::Error;

/// Seconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;
/// 'w' + wal_start + wal_end + send_time.
const XLOG_HEADER: usize = 1 + 8 + 8 + 8;
/// 'k' + wal_end + send_time + reply flag.
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// The CopyData payload of a standby status update.
pub const STATUS_UPDATE_LEN: usize = 1 + 8 + 8 + 8 + 8 + 1;

/// A WAL chunk: for logical replication, one pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// Where the data starts in the WAL.
    pub wal_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending, microseconds since 2000-01-01 UTC.
    pub send_time: i64,
    /// The payload (a slice of the read buffer, not a copy).
    pub data: Bytes,
}

/// A primary keepalive message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending, microseconds since 2000-01-01 UTC.
    pub send_time: i64,
    /// The server wants a status update at once (else it may time the client out).
    pub reply_requested: bool,
}

/// What the replication stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// WAL data (a raw pgoutput message; not decoded here).
    XLogData(XLogData),
    /// A keepalive (already answered by the stream when a reply was requested).
    Keepalive(Keepalive),
}

/// Parses one CopyData payload from the server.
pub fn parse_copy_data(payload: Bytes) -> Result<ReplicationEvent, Error> {
    match payload.first() {
        Some(b'w') if payload.len() >= XLOG_HEADER => Ok(ReplicationEvent::XLogData(XLogData {
            wal_start: Lsn(be_u64(&payload[1..9])),
            wal_end: Lsn(be_u64(&payload[9..17])),
            send_time: be_u64(&payload[17..25]) as i64,
            data: payload.slice(XLOG_HEADER..),
        })),
        Some(b'k') if payload.len() >= KEEPALIVE_LEN => {
            Ok(ReplicationEvent::Keepalive(Keepalive {
                wal_end: Lsn(be_u64(&payload[1..9])),
                send_time: be_u64(&payload[9..17]) as i64,
                reply_requested: payload[17] != 0,
            }))
        }
        Some(tag) => Err(Error::Protocol(format!(
            "replication message '{}' with {} bytes is not XLogData or a keepalive",
            char::from(*tag),
            payload.len()
        ))),
        None => Err(Error::Protocol(
            "empty CopyData in the replication stream".into(),
        )),
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(array)
}

/// The standby status update payload: 'r', write, flush, apply, clock, reply flag.
pub fn status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    now: i64,
    reply_requested: bool,
) -> [u8; STATUS_UPDATE_LEN] {
    let mut out = BytesMut::with_capacity(STATUS_UPDATE_LEN);
    out.put_u8(b'r');
    out.put_u64(write.0);
    out.put_u64(flush.0);
    out.put_u64(apply.0);
    out.put_i64(now);
    out.put_u8(u8::from(reply_requested));
    let mut array = [0u8; STATUS_UPDATE_LEN];
    array.copy_from_slice(&out);
    array
}

/// Now, in microseconds since 2000-01-01 UTC.
pub fn pg_now() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let since_pg = since_unix.saturating_sub(Duration::from_secs(PG_EPOCH_OFFSET_SECS));
    i64::try_from(since_pg.as_micros()).unwrap_or(i64::MAX)
}

/// A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as `SystemTime`.
pub fn pg_time_to_system(micros: i64) -> SystemTime {
    let epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    match u64::try_from(micros) {
        Ok(after) => epoch + Duration::from_micros(after),
        Err(_) => epoch - Duration::from_micros(micros.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_without_copying() {
        let mut raw = vec![b'w'];
        raw.extend_from_slice(&0x0000_0001_0000_0010u64.to_be_bytes());
        raw.extend_from_slice(&0x0000_0001_0000_0100u64.to_be_bytes());
        raw.extend_from_slice(&1_000_000i64.to_be_bytes());
        raw.extend_from_slice(b"Bpayload");
        let bytes = Bytes::from(raw);
        let ReplicationEvent::XLogData(x) = parse_copy_data(bytes.clone()).unwrap() else {
            panic!("not XLogData");
        };
        assert_eq!(
            (x.wal_start, x.wal_end, x.send_time),
            (Lsn(0x1_0000_0010), Lsn(0x1_0000_0100), 1_000_000)
        );
        assert_eq!(&x.data[..], b"Bpayload");
        assert_eq!(
            x.data.as_ptr(),
            bytes[25..].as_ptr(),
            "payload shares the read buffer"
        );
        assert_eq!(
            pg_time_to_system(x.send_time),
            UNIX_EPOCH + Duration::from_secs(946_684_801)
        );
    }

    #[test]
    fn parses_keepalives() {
        let mut raw = vec![b'k'];
        raw.extend_from_slice(&42u64.to_be_bytes());
        raw.extend_from_slice(&7i64.to_be_bytes());
        raw.push(1);
        let event = parse_copy_data(Bytes::from(raw)).unwrap();
        let expected = Keepalive {
            wal_end: Lsn(42),
            send_time: 7,
            reply_requested: true,
        };
        assert_eq!(event, ReplicationEvent::Keepalive(expected));
        assert!(
            parse_copy_data(Bytes::from_static(b"k\0")).is_err(),
            "too short"
        );
        assert!(parse_copy_data(Bytes::from_static(b"x123")).is_err());
        assert!(parse_copy_data(Bytes::new()).is_err());
    }

    #[test]
    fn status_update_matches_the_protocol_layout() {
        let bytes = status_update(
            Lsn(0x0102_0304_0506_0708),
            Lsn(0x10),
            Lsn(0x20),
            0x0a0b,
            true,
        );
        let expected: [u8; 34] = [
            b'r', 1, 2, 3, 4, 5, 6, 7, 8, // write
            0, 0, 0, 0, 0, 0, 0, 0x10, // flush
            0, 0, 0, 0, 0, 0, 0, 0x20, // apply
            0, 0, 0, 0, 0, 0, 0x0a, 0x0b, // clock
            1,    // reply requested
        ];
        assert_eq!(bytes, expected);
        assert_eq!(status_update(Lsn(0), Lsn(0), Lsn(0), 0, false)[33], 0);
        let now = pg_now();
        assert!(now > 800_000_000_000_000, "after 2025: {now}");
    }
}
