//! Logical replication over TLS against a real PostgreSQL 15 server: slot with exported
//! snapshot, pgoutput XLogData, confirmed_flush_lsn following our status updates, the
//! busy-slot SQLSTATE, clean shutdown, and read batching with SO_RCVBUF set.

mod support;

use std::time::Duration;

use pgmorph_replication::conn::{AuthMethod, ConnectOptions, Connection};
use pgmorph_replication::endpoint::Endpoint;
use pgmorph_replication::replication::{
    Lsn, ReplicationEvent, ReplicationStream, SlotOptions, SnapshotAction, StartOptions,
};
use pgmorph_replication::tls::TlsConnector;
use support::certs::Ca;
use support::{scalar, wait_for, PgServer};

const DEADLINE: Duration = Duration::from_secs(20);

async fn server() -> PgServer {
    let ca = Ca::new("pgmorph test CA");
    let server_cert = ca.leaf("server", &["localhost", "127.0.0.1"]);
    let files = [
        ("ca.crt", ca.pem.cert.as_str()),
        ("server.crt", server_cert.cert.as_str()),
        ("server.key", server_cert.key.as_str()),
    ];
    let conf = [
        "ssl = on",
        "ssl_cert_file = '../server.crt'",
        "ssl_key_file = '../server.key'",
    ];
    let hba = ["hostssl all repluser 127.0.0.1/32 scram-sha-256"];
    let server = PgServer::start(&conf, &hba, &files);
    let setup = "CREATE ROLE repluser LOGIN REPLICATION PASSWORD 'replpw'; \
        CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE t";
    server
        .admin()
        .await
        .simple_query(setup)
        .await
        .expect("setup");
    server
}

fn endpoint(server: &PgServer) -> Endpoint {
    server.endpoint(&format!(
        "host=localhost user=repluser password=replpw sslmode=verify-full sslrootcert={} application_name=repltest",
        server.file("ca.crt")
    ))
}

async fn replication_session(server: &PgServer, receive_buffer: Option<u32>) -> Connection {
    let options = ConnectOptions {
        replication: true,
        receive_buffer,
        ..ConnectOptions::default()
    };
    let endpoint = endpoint(server);
    let tls = TlsConnector::for_endpoint(&endpoint).expect("TLS configuration");
    Connection::connect_with_tls(&endpoint, &options, tls.as_ref())
        .await
        .expect("replication connection")
}

/// Reads XLogData until pgoutput's Commit; returns the first payload bytes and the commit's end LSN.
async fn read_transaction(stream: &mut ReplicationStream) -> (Vec<u8>, Lsn) {
    let mut kinds = Vec::new();
    loop {
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("an event in time");
        match event.expect("stream error").expect("stream ended early") {
            ReplicationEvent::XLogData(x) => {
                kinds.push(x.data[0]);
                if x.data[0] == b'C' {
                    // Commit: 'C', flags, commit LSN, end LSN, timestamp.
                    let end = u64::from_be_bytes(x.data[10..18].try_into().expect("8 bytes"));
                    return (kinds, Lsn(end));
                }
            }
            ReplicationEvent::Keepalive(_) => {}
        }
    }
}

async fn slot_state(admin: &mut Connection, column: &str) -> Option<String> {
    scalar(
        admin,
        &format!("SELECT {column} FROM pg_replication_slots WHERE slot_name = 's1'"),
    )
    .await
}

#[tokio::test]
async fn logical_replication_over_tls() {
    let server = server().await;
    let mut admin = server.admin().await;
    let mut session = replication_session(&server, None).await;
    assert_eq!(session.auth_method(), AuthMethod::ScramSha256Plus);
    let system = session.identify_system().await.unwrap();
    assert_eq!(
        (system.timeline, system.dbname.as_deref()),
        (1, Some("postgres"))
    );

    let slot_options = SlotOptions {
        name: "s1".into(),
        temporary: false,
        snapshot: SnapshotAction::Export,
        failover: false,
    };
    let slot = session
        .create_replication_slot(&slot_options)
        .await
        .unwrap();
    assert_eq!(
        (slot.slot_name.as_str(), slot.output_plugin.as_deref()),
        ("s1", Some("pgoutput"))
    );
    assert!(slot.consistent_point >= system.xlogpos);
    let snapshot = slot.snapshot_name.expect("exported snapshot");
    let use_snapshot = format!("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'; SELECT count(*) FROM t");
    assert_eq!(
        admin.query_rows(&use_snapshot).await.unwrap(),
        vec![vec![Some("0".to_owned())]]
    );
    admin
        .simple_query("COMMIT; INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();

    let mut options = StartOptions::new("s1", slot.consistent_point, vec!["p".into()]);
    options.proto_version = Some(4);
    options.status_interval = Duration::from_millis(500);
    let mut stream = session.start_replication(options.clone()).await.unwrap();
    assert_eq!(stream.proto_version(), 3, "capped for PostgreSQL 15");
    let walsender_ssl = "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_replication USING (pid) WHERE application_name = 'repltest'";
    assert_eq!(
        scalar(&mut admin, walsender_ssl).await.as_deref(),
        Some("t")
    );

    let (kinds, commit_end) = read_transaction(&mut stream).await;
    assert_eq!(kinds.first(), Some(&b'B'));
    assert_eq!(kinds.iter().filter(|k| **k == b'I').count(), 3, "{kinds:?}");
    let positions = stream.positions();
    positions.set_write(commit_end);
    positions.set_flush(commit_end);
    positions.set_apply(commit_end);
    stream.send_status_now();
    let confirmed = format!("SELECT confirmed_flush_lsn = '{commit_end}' FROM pg_replication_slots WHERE slot_name = 's1'");
    wait_for(&mut admin, &confirmed, "t", DEADLINE).await;

    let busy = replication_session(&server, None)
        .await
        .start_replication(options.clone())
        .await
        .unwrap_err();
    assert!(busy.slot_in_use(), "{busy}");
    assert_eq!(busy.code(), Some("55006"));
    let mut missing = options.clone();
    missing.slot = "nope".into();
    let error = replication_session(&server, None)
        .await
        .start_replication(missing)
        .await
        .unwrap_err();
    assert!(error.undefined_object(), "{error}");

    tokio::time::timeout(DEADLINE, stream.shutdown())
        .await
        .unwrap()
        .unwrap();
    let active = "SELECT active FROM pg_replication_slots WHERE slot_name = 's1'";
    wait_for(&mut admin, active, "f", DEADLINE).await;
    assert_eq!(
        slot_state(&mut admin, "confirmed_flush_lsn").await,
        Some(commit_end.to_string())
    );

    batched_reads_resume_after_the_confirmed_position(&server, &mut admin, options, commit_end)
        .await;
}

/// Restarts on the same slot with SO_RCVBUF and read coalescing; a big transaction arrives whole.
async fn batched_reads_resume_after_the_confirmed_position(
    server: &PgServer,
    admin: &mut Connection,
    mut options: StartOptions,
    from: Lsn,
) {
    let session = replication_session(server, Some(1 << 20)).await;
    options.start_lsn = from;
    options.read_coalesce = Duration::from_millis(2);
    options.channel_capacity = 64;
    let mut stream = session.start_replication(options).await.unwrap();
    admin
        .simple_query("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(10, 5009) g")
        .await
        .unwrap();
    let (kinds, end) = read_transaction(&mut stream).await;
    assert_eq!(
        kinds.iter().filter(|k| **k == b'I').count(),
        5000,
        "only the new transaction, complete"
    );
    assert!(end > from);
    stream.shutdown().await.unwrap();
}
