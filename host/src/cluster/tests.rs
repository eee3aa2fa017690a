//! Tests against real PostgreSQL servers (need the PostgreSQL binaries).

use std::net::{Ipv4Addr, TcpListener};

use super::{ClusterError, ClusterOptions, LocalCluster};

fn start(options: ClusterOptions) -> LocalCluster {
    LocalCluster::start(options).unwrap_or_else(|e| panic!("starting a cluster: {e}"))
}

fn psql(cluster: &LocalCluster, sql: &str) -> String {
    cluster
        .psql("postgres", sql)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", cluster.log_tail()))
}

#[tokio::test]
async fn logical_source_has_logical_wal_level() {
    let cluster = start(ClusterOptions::source());
    assert_eq!(psql(&cluster, "SHOW wal_level"), "logical");
    assert_eq!(psql(&cluster, "SHOW fsync"), "off");
    assert_eq!(cluster.superuser(), "postgres");
    assert_eq!(
        cluster.url("app"),
        format!("postgres://postgres@127.0.0.1:{}/app", cluster.port())
    );

    cluster.create_database("app").unwrap();
    let client = cluster.connect("app").await.unwrap();
    let row = client.query_one("SHOW wal_level", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "logical");
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");

    // pg_hba allows TCP replication connections from 127.0.0.1.
    let identify = cluster
        .psql(
            "dbname=postgres replication=database host=127.0.0.1",
            "IDENTIFY_SYSTEM",
        )
        .unwrap();
    assert!(identify.contains('|'), "{identify}");

    // Several statements; command tags stay out of the output.
    let out = psql(
        &cluster,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);\nSELECT x FROM t ORDER BY x;",
    );
    assert_eq!(out, "1\n2");
    let err = cluster
        .psql("postgres", "SELECT no_such_column")
        .unwrap_err();
    assert!(matches!(err, ClusterError::Command { .. }), "{err}");
    assert!(err.to_string().contains("no_such_column"), "{err}");
}

#[tokio::test]
async fn password_is_required_over_tcp() {
    let options = ClusterOptions::destination().with_password("s3cret p@ss");
    let cluster = start(options);
    assert_eq!(
        cluster.url("postgres"),
        format!(
            "postgres://postgres:s3cret%20p%40ss@127.0.0.1:{}/postgres",
            cluster.port()
        )
    );

    let mut wrong = cluster.config("postgres");
    wrong.password("wrong");
    assert!(wrong.connect(tokio_postgres::NoTls).await.is_err());
    let mut missing = cluster.config("postgres");
    missing.password(Vec::<u8>::new());
    assert!(missing.connect(tokio_postgres::NoTls).await.is_err());

    let client = cluster.connect("postgres").await.unwrap();
    let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    // psql uses the trusted Unix socket.
    assert_eq!(psql(&cluster, "SELECT 42"), "42");
}

#[test]
fn drop_removes_data_and_frees_port() {
    let cluster = start(ClusterOptions::destination());
    let data_dir = cluster.data_dir().to_path_buf();
    let root = cluster.socket_dir().to_path_buf();
    let port = cluster.port();
    assert!(data_dir.join("PG_VERSION").is_file());
    assert!(root
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("pgmorph-pg-"));
    drop(cluster);
    assert!(!data_dir.exists());
    assert!(!root.exists());
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free after drop");
}

#[test]
fn stop_restart_and_change_settings() {
    let mut cluster = start(ClusterOptions::source());
    let port = cluster.port();
    psql(
        &cluster,
        "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)",
    );

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.psql("postgres", "SELECT 1").is_err());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    cluster.stop().unwrap(); // idempotent

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(psql(&cluster, "SELECT x FROM kept"), "7");

    cluster
        .set_setting_and_restart("wal_level", "replica")
        .unwrap();
    assert_eq!(psql(&cluster, "SHOW wal_level"), "replica");
    assert_eq!(cluster.port(), port);
    assert!(cluster.log_tail().contains("database system is ready"));
}

#[test]
fn bad_setting_fails_start_with_log() {
    let options = ClusterOptions::destination().with_setting("no_such_setting_pgmorph", "1");
    let err = LocalCluster::start(options).unwrap_err();
    match &err {
        ClusterError::Start { attempts, log_tail } => {
            assert_eq!(*attempts, 1);
            assert!(log_tail.contains("no_such_setting_pgmorph"), "{log_tail}");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn panic_in_test_still_cleans_up() {
    let mut root = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = start(ClusterOptions::destination());
        root = Some(cluster.socket_dir().to_path_buf());
        panic!("simulated test failure");
    }));
    assert!(result.is_err());
    let root = root.expect("cluster started");
    assert!(!root.exists(), "{} still exists", root.display());
}
