//! TLS against real PostgreSQL 15 servers: verify-full/verify-ca, wrong CA, host names
//! and IP SANs, client certificates, md5/SCRAM(-PLUS) logins, ssl=off servers, and the
//! tokio-postgres connector.

mod support;

use pgmorph_replication::conn::{AuthMethod, ConnectOptions, Connection};
use pgmorph_replication::endpoint::Endpoint;
use pgmorph_replication::error::Error;
use pgmorph_replication::tls::TlsConnector;
use support::certs::Ca;
use support::{scalar, PgServer};

const HBA: &[&str] = &[
    "hostssl all certuser 127.0.0.1/32 cert",
    "hostssl all scramuser 127.0.0.1/32 scram-sha-256",
    "host all scramuser 127.0.0.1/32 scram-sha-256",
    "host all md5user 127.0.0.1/32 md5",
    "hostnossl all allowuser 127.0.0.1/32 reject",
    "hostssl all allowuser 127.0.0.1/32 trust",
    "host all postgres 127.0.0.1/32 trust",
];

const ROLES: &str = "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5pw'; \
    SET password_encryption = 'scram-sha-256'; CREATE ROLE scramuser LOGIN PASSWORD 'scrampw'; \
    CREATE ROLE certuser LOGIN; CREATE ROLE allowuser LOGIN";

/// A server with ssl=on whose certificate has the given SANs, plus client and foreign CA files.
async fn tls_server(server_sans: &[&str]) -> PgServer {
    let ca = Ca::new("pgmorph test CA");
    let other = Ca::new("unrelated CA");
    let server_cert = ca.leaf("server", server_sans);
    let client = ca.leaf("certuser", &[]);
    let files = [
        ("ca.crt", ca.pem.cert.as_str()),
        ("other-ca.crt", other.pem.cert.as_str()),
        ("server.crt", server_cert.cert.as_str()),
        ("server.key", server_cert.key.as_str()),
        ("client.crt", client.cert.as_str()),
        ("client.key", client.key.as_str()),
    ];
    let conf = [
        "ssl = on",
        "ssl_cert_file = '../server.crt'",
        "ssl_key_file = '../server.key'",
        "ssl_ca_file = '../ca.crt'",
    ];
    let server = PgServer::start(&conf, HBA, &files);
    server
        .admin()
        .await
        .simple_query(ROLES)
        .await
        .expect("create roles");
    server
}

async fn connect(server: &PgServer, conninfo: &str) -> Result<Connection, Error> {
    Connection::connect(&server.endpoint(conninfo), &ConnectOptions::default()).await
}

async fn ssl_in_use(conn: &mut Connection) -> bool {
    scalar(
        conn,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
    .as_deref()
        == Some("t")
}

#[tokio::test]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let server = tls_server(&["localhost", "127.0.0.1"]).await;
    let ca = server.file("ca.crt");
    for host in ["localhost", "127.0.0.1"] {
        let mut conn = connect(
            &server,
            &format!("host={host} user=postgres sslmode=verify-full sslrootcert={ca}"),
        )
        .await
        .unwrap();
        assert!(conn.is_tls() && ssl_in_use(&mut conn).await, "{host}");
    }

    let other = server.file("other-ca.crt");
    let error = connect(
        &server,
        &format!("host=localhost user=postgres sslmode=verify-full sslrootcert={other}"),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::TlsHandshake { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("not signed by a CA in sslrootcert"),
        "{error}"
    );

    let wrong_name =
        format!("host=db.wrong.example hostaddr=127.0.0.1 user=postgres sslrootcert={ca}");
    let error = connect(&server, &format!("{wrong_name} sslmode=verify-full"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not match the host name \"db.wrong.example\""),
        "{error}"
    );
    let mut conn = connect(&server, &format!("{wrong_name} sslmode=verify-ca"))
        .await
        .unwrap();
    assert!(ssl_in_use(&mut conn).await, "verify-ca ignores the name");
    for (mode, tls) in [("prefer", true), ("require", true), ("disable", false)] {
        let conn = connect(
            &server,
            &format!("host=127.0.0.1 user=postgres sslmode={mode}"),
        )
        .await
        .unwrap();
        assert_eq!(
            conn.is_tls(),
            tls,
            "{mode}: no certificate check without sslrootcert"
        );
    }
}

#[tokio::test]
async fn verify_full_by_ip_needs_an_ip_san() {
    let server = tls_server(&["localhost"]).await;
    let ca = server.file("ca.crt");
    let error = connect(
        &server,
        &format!("host=127.0.0.1 user=postgres sslmode=verify-full sslrootcert={ca}"),
    )
    .await
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("no IP address SAN for 127.0.0.1") && text.contains("sslmode=verify-ca"),
        "{text}"
    );
    let mut conn = connect(
        &server,
        &format!("host=127.0.0.1 user=postgres sslmode=verify-ca sslrootcert={ca}"),
    )
    .await
    .unwrap();
    assert!(ssl_in_use(&mut conn).await);
    connect(
        &server,
        &format!("host=localhost user=postgres sslmode=verify-full sslrootcert={ca}"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn client_certificate_and_password_logins() {
    let server = tls_server(&["localhost", "127.0.0.1"]).await;
    let (ca, cert, key) = (
        server.file("ca.crt"),
        server.file("client.crt"),
        server.file("client.key"),
    );
    let full = format!("host=localhost sslmode=verify-full sslrootcert={ca}");

    let mut conn = connect(
        &server,
        &format!("{full} user=certuser sslcert={cert} sslkey={key}"),
    )
    .await
    .unwrap();
    assert_eq!(conn.auth_method(), AuthMethod::Trust);
    assert_eq!(
        scalar(&mut conn, "SELECT current_user").await.as_deref(),
        Some("certuser")
    );
    let error = connect(&server, &format!("{full} user=certuser"))
        .await
        .unwrap_err();
    assert!(error.is_auth_failure(), "no client certificate: {error}");

    let md5_plain = connect(
        &server,
        "host=127.0.0.1 user=md5user password=md5pw sslmode=disable",
    )
    .await
    .unwrap();
    assert_eq!(
        (md5_plain.auth_method(), md5_plain.is_tls()),
        (AuthMethod::Md5, false)
    );
    let mut md5_tls = connect(&server, &format!("{full} user=md5user password=md5pw"))
        .await
        .unwrap();
    assert_eq!(md5_tls.auth_method(), AuthMethod::Md5);
    assert!(ssl_in_use(&mut md5_tls).await);

    let scram_plain = connect(
        &server,
        "host=127.0.0.1 user=scramuser password=scrampw sslmode=disable",
    )
    .await
    .unwrap();
    assert_eq!(
        (scram_plain.auth_method(), scram_plain.is_tls()),
        (AuthMethod::ScramSha256, false)
    );
    let mut scram_tls = connect(&server, &format!("{full} user=scramuser password=scrampw"))
        .await
        .unwrap();
    assert_eq!(
        scram_tls.auth_method(),
        AuthMethod::ScramSha256Plus,
        "channel binding under TLS"
    );
    assert!(ssl_in_use(&mut scram_tls).await);
    let url = format!(
        "postgresql://scramuser:scrampw@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    let env = |name: &str| (name == "HOME").then(|| "/nonexistent".to_owned());
    let from_url = Connection::connect(
        &Endpoint::parse_with_env(&url, &env).unwrap(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(from_url.auth_method(), AuthMethod::ScramSha256Plus);
    let require_with_wrong_root = format!(
        "host=localhost user=postgres sslmode=require sslrootcert={}",
        server.file("other-ca.crt")
    );
    let error = connect(&server, &require_with_wrong_root)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TlsHandshake { .. }),
        "require with sslrootcert verifies the chain: {error}"
    );

    for conninfo in [
        format!("{full} user=scramuser password=wrong"),
        "host=127.0.0.1 user=md5user password=wrong".to_owned(),
    ] {
        let error = connect(&server, &conninfo).await.unwrap_err();
        assert!(error.is_auth_failure(), "{error}");
        assert_eq!(error.code(), Some("28P01"), "{error}");
    }
    let error = connect(&server, "host=127.0.0.1 user=md5user sslmode=disable")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PasswordMissing { .. }), "{error}");
}

#[tokio::test]
async fn sslmode_allow_retries_with_tls_when_plaintext_is_rejected() {
    let server = tls_server(&["localhost"]).await;
    let mut conn = connect(&server, "host=127.0.0.1 user=allowuser sslmode=allow")
        .await
        .unwrap();
    assert!(conn.is_tls() && ssl_in_use(&mut conn).await);
    let error = connect(&server, "host=127.0.0.1 user=allowuser sslmode=disable")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("28000"), "{error}");
    let plain = connect(&server, "host=127.0.0.1 user=postgres sslmode=allow")
        .await
        .unwrap();
    assert!(!plain.is_tls(), "allow tries plaintext first");
}

#[tokio::test]
async fn server_without_ssl_refuses_require_and_serves_prefer_in_plaintext() {
    let ca = Ca::new("unused CA");
    let files = [("ca.crt", ca.pem.cert.as_str())];
    let server = PgServer::start(&["ssl = off"], &["host all all 127.0.0.1/32 trust"], &files);
    let root = format!("sslrootcert={}", server.file("ca.crt"));
    for (mode, extra) in [
        ("require", ""),
        ("verify-ca", root.as_str()),
        ("verify-full", root.as_str()),
    ] {
        let conninfo = format!("host=127.0.0.1 user=postgres sslmode={mode} {extra}");
        let error = match connect(&server, &conninfo).await {
            Ok(_) => panic!("{mode} connected without TLS"),
            Err(error) => error,
        };
        assert!(matches!(error, Error::TlsRefused { .. }), "{error:?}");
        let expected = format!("does not support TLS but sslmode={mode} requires it");
        assert!(error.to_string().contains(&expected), "{error}");
    }
    let mut conn = connect(&server, "host=127.0.0.1 user=postgres sslmode=prefer")
        .await
        .unwrap();
    assert!(!conn.is_tls() && !ssl_in_use(&mut conn).await);
    assert_eq!(conn.server_version_num().map(|v| v / 10000), Some(15));
}

#[tokio::test]
async fn tokio_postgres_connects_with_the_same_configuration() {
    let server = tls_server(&["localhost", "127.0.0.1"]).await;
    let endpoint = server.endpoint(&format!(
        "host=localhost user=scramuser password=scrampw sslmode=verify-full sslrootcert={}",
        server.file("ca.crt")
    ));
    let tls = TlsConnector::for_endpoint(&endpoint).unwrap().unwrap();
    let mut config = endpoint.tokio_postgres_config();
    config.channel_binding(tokio_postgres::config::ChannelBinding::Require);
    let (client, connection) = config
        .connect(tls.make_tls_connect())
        .await
        .expect("tokio-postgres over TLS with channel binding");
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    drop(client);
    task.await.unwrap().unwrap();
}
