//! Unit tests: command text, protocol version negotiation, and the stream task against
//! a scripted server on a socket pair (keepalive replies, slow callers, shutdown).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::*;
use crate::conn::PgStream;

#[test]
fn negotiates_the_protocol_version_by_server_version() {
    assert_eq!(max_proto_version(130_010), 1);
    assert_eq!(max_proto_version(140_000), 2);
    assert_eq!(max_proto_version(150_004), 3);
    assert_eq!(max_proto_version(160_000), 4);
    assert_eq!(max_proto_version(170_002), 4);
    assert_eq!(negotiate_proto_version(None, 150_004), 3);
    assert_eq!(negotiate_proto_version(Some(4), 150_004), 3, "capped");
    assert_eq!(negotiate_proto_version(Some(2), 160_000), 2, "pinned lower");
    assert_eq!(negotiate_proto_version(Some(0), 160_000), 1);
}

#[test]
fn create_slot_syntax_depends_on_the_server() {
    let options = SlotOptions {
        name: "s\"1".into(),
        temporary: true,
        snapshot: SnapshotAction::Export,
        failover: false,
    };
    assert_eq!(
        create_slot_command(&options, 150_000).unwrap(),
        "CREATE_REPLICATION_SLOT \"s\"\"1\" TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
    );
    assert_eq!(
        create_slot_command(&options, 140_005).unwrap(),
        "CREATE_REPLICATION_SLOT \"s\"\"1\" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
    );
    let options = SlotOptions {
        name: "s".into(),
        temporary: false,
        snapshot: SnapshotAction::NoExport,
        failover: false,
    };
    assert_eq!(
        create_slot_command(&options, 160_000).unwrap(),
        "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing')"
    );
    assert_eq!(
        create_slot_command(&options, 100_000).unwrap(),
        "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT"
    );
}

#[test]
fn failover_slots_need_postgresql_17() {
    let options = SlotOptions {
        name: "pgmorph_c".into(),
        temporary: false,
        snapshot: SnapshotAction::Export,
        failover: true,
    };
    assert_eq!(
        create_slot_command(&options, 170_000).unwrap(),
        "CREATE_REPLICATION_SLOT \"pgmorph_c\" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER)"
    );
    assert_eq!(
        create_slot_command(&options, 180_001).unwrap(),
        "CREATE_REPLICATION_SLOT \"pgmorph_c\" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER)"
    );
    for old in [160_004, 140_010] {
        let err = create_slot_command(&options, old).unwrap_err().to_string();
        assert!(
            err.contains(&old.to_string()) && err.contains("17"),
            "{err}"
        );
    }
    assert_eq!(
        alter_slot_failover_command("s\"1", true, 170_002).unwrap(),
        "ALTER_REPLICATION_SLOT \"s\"\"1\" (FAILOVER true)"
    );
    assert_eq!(
        alter_slot_failover_command("s", false, 180_000).unwrap(),
        "ALTER_REPLICATION_SLOT \"s\" (FAILOVER false)"
    );
    assert!(alter_slot_failover_command("s", true, 160_000).is_err());
}

#[test]
fn start_replication_command_quotes_and_options() {
    let mut options = StartOptions::new(
        "slot",
        Lsn(0x1_0000_00A0),
        vec!["pub".into(), "it's".into()],
    );
    assert_eq!(
        start_replication_command(&options, 2),
        "START_REPLICATION SLOT \"slot\" LOGICAL 1/A0 (proto_version '2', publication_names '\"pub\",\"it''s\"')"
    );
    options.binary = true;
    options.messages = true;
    options.streaming = Streaming::On;
    assert_eq!(
        start_replication_command(&options, 4),
        "START_REPLICATION SLOT \"slot\" LOGICAL 1/A0 (proto_version '4', publication_names '\"pub\",\"it''s\"', binary 'true', messages 'true', streaming 'on')"
    );
}

fn copy_data(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(b'd');
    out.put_u32(payload.len() as u32 + 4);
    out.put_slice(payload);
    out.to_vec()
}

fn keepalive(wal_end: u64, reply: bool) -> Vec<u8> {
    let mut payload = vec![b'k'];
    payload.extend_from_slice(&wal_end.to_be_bytes());
    payload.extend_from_slice(&0i64.to_be_bytes());
    payload.push(u8::from(reply));
    copy_data(&payload)
}

fn xlog(start: u64, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![b'w'];
    payload.extend_from_slice(&start.to_be_bytes());
    payload.extend_from_slice(&start.to_be_bytes());
    payload.extend_from_slice(&0i64.to_be_bytes());
    payload.extend_from_slice(data);
    copy_data(&payload)
}

/// Reads one frontend message: (tag, body).
async fn read_frontend(server: &mut UnixStream) -> (u8, Vec<u8>) {
    let tag = server.read_u8().await.unwrap();
    let len = server.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    server.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Reads a status update and returns its (write, flush, apply).
async fn read_status(server: &mut UnixStream) -> (u64, u64, u64) {
    let (tag, body) = read_frontend(server).await;
    assert_eq!((tag, body.len(), body[0]), (b'd', STATUS_UPDATE_LEN, b'r'));
    let field = |i: usize| u64::from_be_bytes(body[1 + 8 * i..9 + 8 * i].try_into().unwrap());
    (field(0), field(1), field(2))
}

fn stream_over_pair(options: StartOptions) -> (ReplicationStream, UnixStream) {
    let (client, server) = UnixStream::pair().unwrap();
    let conn = Connection::new(PgStream::Unix(client), "test".into());
    (ReplicationStream::spawn(conn, &options, 2), server)
}

#[tokio::test]
async fn answers_keepalives_and_reports_positions_while_the_caller_is_slow() {
    let mut options = StartOptions::new("s", Lsn(0), vec![]);
    options.channel_capacity = 1;
    options.status_interval = Duration::from_millis(200);
    let (mut stream, mut server) = stream_over_pair(options);
    let positions = stream.positions();
    positions.set_write(Lsn(30));
    positions.set_flush(Lsn(20));
    positions.set_apply(Lsn(10));
    positions.set_flush(Lsn(5)); // never moves back
                                 // Fill the channel (capacity 1) and one more pending, then ask for a reply.
    server
        .write_all(&[xlog(1, b"B"), xlog(2, b"I"), keepalive(99, true)].concat())
        .await
        .unwrap();
    // The caller reads nothing yet; the periodic update still arrives.
    assert_eq!(read_status(&mut server).await, (30, 20, 10));
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, ReplicationEvent::XLogData(ref x) if &x.data[..] == b"B"));
    // With room again the keepalive is read and answered at once.
    assert_eq!(read_status(&mut server).await, (30, 20, 10));
    assert!(matches!(
        stream.next().await.unwrap(),
        Some(ReplicationEvent::XLogData(_))
    ));
    let third = stream.next().await.unwrap();
    assert!(
        matches!(third, Some(ReplicationEvent::Keepalive(k)) if k.reply_requested && k.wal_end == Lsn(99))
    );
    positions.set_flush(Lsn(25));
    stream.send_status_now();
    assert_eq!(read_status(&mut server).await, (30, 25, 10));
    drop(stream);
}

#[tokio::test]
async fn shutdown_sends_copy_done_drains_and_terminates() {
    let (stream, mut server) = stream_over_pair(StartOptions::new("s", Lsn(0), vec![]));
    stream.positions().set_flush(Lsn(7));
    let script = tokio::spawn(async move {
        assert_eq!(read_status(&mut server).await.1, 7);
        assert_eq!(read_frontend(&mut server).await.0, b'c', "CopyDone");
        // Late data, then the server's CopyDone, CommandComplete, ReadyForQuery.
        let mut answer = xlog(8, b"C");
        answer.extend_from_slice(&[b'c', 0, 0, 0, 4]);
        answer.extend_from_slice(&[b'C', 0, 0, 0, 11]);
        answer.extend_from_slice(b"COPY 0\0");
        answer.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
        server.write_all(&answer).await.unwrap();
        assert_eq!(read_frontend(&mut server).await.0, b'X', "Terminate");
    });
    tokio::time::timeout(Duration::from_secs(5), stream.shutdown())
        .await
        .unwrap()
        .unwrap();
    script.await.unwrap();
}

#[tokio::test]
async fn server_errors_end_the_stream_with_their_sqlstate() {
    let (mut stream, mut server) = stream_over_pair(StartOptions::new("s", Lsn(0), vec![]));
    let mut fields = b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0".to_vec();
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.append(&mut fields);
    server.write_all(&message).await.unwrap();
    let error = stream.next().await.unwrap_err();
    assert_eq!(error.code(), Some("57P01"));
    assert!(stream.next().await.unwrap().is_none());
}

async fn next_xlog(stream: &mut ReplicationStream) -> XLogData {
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        Ok(Ok(Some(ReplicationEvent::XLogData(x)))) => x,
        other => panic!("expected XLogData, got {other:?}"),
    }
}

/// Sends 20 messages, reads them, then measures how long one more message takes.
async fn delay_of_a_late_message(coalesce: Duration) -> Duration {
    let mut options = StartOptions::new("s", Lsn(0), vec![]);
    options.read_coalesce = coalesce;
    let (mut stream, mut server) = stream_over_pair(options);
    let batch: Vec<u8> = (0..20).flat_map(|i| xlog(i, b"I")).collect();
    server.write_all(&batch).await.unwrap();
    for _ in 0..20 {
        next_xlog(&mut stream).await;
    }
    let sent = std::time::Instant::now();
    server.write_all(&xlog(99, b"C")).await.unwrap();
    assert_eq!(next_xlog(&mut stream).await.wal_start, Lsn(99));
    sent.elapsed()
}

#[tokio::test]
async fn read_coalescing_pauses_when_the_server_is_not_backlogged() {
    let paused = delay_of_a_late_message(Duration::from_millis(300)).await;
    assert!(paused >= Duration::from_millis(200), "{paused:?}");
    let direct = delay_of_a_late_message(Duration::ZERO).await;
    assert!(direct < Duration::from_millis(200), "{direct:?}");
}

#[tokio::test]
async fn read_coalescing_reads_on_while_data_is_waiting() {
    let mut options = StartOptions::new("s", Lsn(0), vec![]);
    options.read_coalesce = Duration::from_millis(300);
    let (mut stream, mut server) = stream_over_pair(options);
    let big = vec![b'I'; 4096];
    let mut burst: Vec<u8> = (0..20).flat_map(|i| xlog(i, b"I")).collect();
    burst.extend((20..60).flat_map(|i| xlog(i, &big)));
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        server.write_all(&burst).await.unwrap();
        server
    });
    for i in 0..60 {
        assert_eq!(next_xlog(&mut stream).await.wal_start, Lsn(i));
    }
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    drop(writer.await.unwrap());
}
