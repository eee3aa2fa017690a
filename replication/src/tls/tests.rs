//! Unit tests for building TLS configurations and the sslmode mapping.

use super::*;
use crate::endpoint::Endpoint;
use tokio_postgres::config::SslMode as Pg;

fn settings(s: &str, home: &str) -> TlsSettings {
    let env = |name: &str| match name {
        "USER" => Some("u".to_owned()),
        "HOME" => Some(home.to_owned()),
        _ => None,
    };
    Endpoint::parse_with_env(s, &env).map(|e| e.tls).unwrap()
}

#[test]
fn maps_sslmode_to_tokio_postgres() {
    assert_eq!(tokio_postgres_ssl_mode(SslMode::Disable), Pg::Disable);
    assert_eq!(tokio_postgres_ssl_mode(SslMode::Allow), Pg::Prefer);
    assert_eq!(tokio_postgres_ssl_mode(SslMode::Prefer), Pg::Prefer);
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        assert_eq!(tokio_postgres_ssl_mode(mode), Pg::Require);
    }
}

#[test]
fn disable_builds_nothing_and_require_needs_no_root() {
    assert!(
        TlsConnector::from_settings(&settings("sslmode=disable", "/nonexistent"))
            .unwrap()
            .is_none()
    );
    for mode in ["allow", "prefer", "require"] {
        let connector =
            TlsConnector::from_settings(&settings(&format!("sslmode={mode}"), "/nonexistent"))
                .unwrap();
        assert!(connector.is_some(), "{mode}");
    }
}

#[test]
fn verify_modes_explain_a_missing_root_certificate() {
    let error =
        TlsConnector::from_settings(&settings("sslmode=verify-full", "/nonexistent")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "sslmode=verify-full verifies the server certificate but the root certificate file /nonexistent/.postgresql/root.crt does not exist; set sslrootcert to the CA certificate (PEM) or to \"system\""
    );
    let error =
        TlsConnector::from_settings(&settings("sslmode=require sslrootcert=/no/such.pem", "/x"))
            .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("could not use sslrootcert /no/such.pem: "),
        "{error}"
    );
}

#[test]
fn sslcert_without_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    let error =
        TlsConnector::from_settings(&settings("sslmode=require sslcert=/c.pem", home)).unwrap_err();
    assert_eq!(error.to_string(), "sslcert /c.pem is set but sslkey is not");
}

#[test]
fn server_names_for_hosts_and_addresses() {
    assert!(matches!(
        server_name("db.example.com"),
        Ok(ServerName::DnsName(_))
    ));
    assert!(matches!(
        server_name("127.0.0.1"),
        Ok(ServerName::IpAddress(_))
    ));
    assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
    assert!(server_name("bad name!").is_err());
}
