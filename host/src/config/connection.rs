//! Connection settings for one server: a `postgres://` URL or a libpq `key=value` string,
//! password sources and TLS (libpq's sslmode), shared by every SQL and replication connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgmorph_replication::endpoint::{process_env, Env};
use pgmorph_replication::{
    ConnectOptions, Endpoint, EndpointError, SslMode, StartOptions, TlsConnector, TlsError,
};

/// Session settings pinned on every connection so that values render the same text on both
/// sides (pgoutput, COPY and the destination all use them).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres \
     -c extra_float_digits=3 -c bytea_output=hex -c idle_in_transaction_session_timeout=0 \
     -c statement_timeout=0 -c client_min_messages=warning";

/// How long a connection may take when the string sets no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection string could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The URL or key=value string is invalid; the message names the wrong part.
    #[error("{side} url: {source}")]
    Url {
        /// `source` or `destination`.
        side: &'static str,
        /// What is wrong, e.g. `port "x" is not a number` or `unknown parameter "sslrootcrt"`.
        source: EndpointError,
    },
    /// The password file cannot be read.
    #[error("{side} password_file {path}: {source}")]
    PasswordFile {
        /// `source` or `destination`.
        side: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS settings cannot be used (a missing or unreadable sslrootcert, sslcert or sslkey).
    #[error("{side} url: {source}")]
    Tls {
        /// `source` or `destination`.
        side: &'static str,
        /// What is wrong with the certificate settings.
        source: TlsError,
    },
}

/// Everything needed to open SQL and replication connections to one server.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// `source` or `destination`, for messages.
    pub side: &'static str,
    /// Host name, IP address or Unix socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// Read the replication stream in batches (see [`ReadBatching`]).
    pub batch_reads: bool,
    /// Ask the source to send large transactions while they run (pgoutput `streaming`,
    /// protocol 2), so they are applied before their commit arrives.
    pub stream_in_progress: bool,
    /// Ask the source to send values in binary form (pgoutput `binary`, PostgreSQL 14+), for
    /// tables whose values may travel so (see `TableMapping::binary_safe`).
    pub binary_values: bool,
    /// The parsed string with the resolved password (never printed) and TLS settings.
    endpoint: Endpoint,
    /// Built once from the TLS settings; `None` for sslmode=disable.
    tls: Option<Arc<TlsConnector>>,
}
/// TCP receive buffer of a batching replication connection: small enough that the window
/// closes during a pause.
const BATCH_RECEIVE_BUFFER: u32 = 16 * 1024;
/// How long a batching replication connection waits after a busy read.
const BATCH_PAUSE: Duration = Duration::from_millis(1);

/// The first `server_version_num` whose pgoutput sends binary values.
pub const BINARY_VALUES_VERSION: u32 = 140_000;

/// `read_batching` of `[source]`: how the replication stream is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadBatching {
    /// Batch when the source is reached over the loopback interface (same host).
    #[default]
    Auto,
    /// Always batch: a 16 KiB TCP receive buffer, and a 1 ms pause after a busy stretch when
    /// little is waiting, so the walsender sends many changes per packet. Over a network the
    /// small buffer caps throughput at about 32 KiB per round trip.
    On,
    /// Read every message as it arrives, with the kernel's buffer auto-tuning.
    Off,
}

impl ReadBatching {
    /// Whether to batch reads from `host` (a name, an address or a Unix socket directory).
    pub fn applies_to(self, host: &str) -> bool {
        match self {
            ReadBatching::On => true,
            ReadBatching::Off => false,
            ReadBatching::Auto => is_loopback(host),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (sslmode={})", self.describe(), self.sslmode())
    }
}

impl ConnectionSettings {
    /// Parses `url` (a `postgres://` URL or a libpq `key=value` string, with libpq's PG*
    /// environment fallbacks) and builds its TLS configuration. The password comes from the
    /// string, else the first line of `password_file`, else `PGPASSWORD`, else `.pgpass`
    /// (`passfile`, `PGPASSFILE` or `~/.pgpass`).
    pub fn from_url(
        side: &'static str,
        url: &str,
        password_file: Option<&Path>,
    ) -> Result<Self, ConnectionError> {
        Self::from_url_with_env(side, url, password_file, &process_env)
    }

    /// [`Self::from_url`] with the environment given as a function (for tests).
    pub fn from_url_with_env(
        side: &'static str,
        url: &str,
        password_file: Option<&Path>,
        env: Env<'_>,
    ) -> Result<Self, ConnectionError> {
        // Without a user in the string, PGUSER or USER, log in as `postgres`.
        let env_or_default =
            |name: &str| env(name).or_else(|| (name == "USER").then(|| "postgres".to_string()));
        let mut endpoint = Endpoint::parse_with_env(url, &env_or_default)
            .map_err(|source| ConnectionError::Url { side, source })?;
        let (_, warnings) = endpoint
            .resolve_password(password_file, env)
            .map_err(|e| match e {
                EndpointError::PasswordFile { path, source } => ConnectionError::PasswordFile {
                    side,
                    path: path.display().to_string(),
                    source,
                },
                source => ConnectionError::Url { side, source },
            })?;
        for warning in warnings {
            tracing::warn!(side, %warning, "password lookup");
        }
        let tls = TlsConnector::for_endpoint(&endpoint)
            .map_err(|source| ConnectionError::Tls { side, source })?
            .map(Arc::new);
        Ok(Self {
            side,
            host: endpoint.host.clone(),
            port: endpoint.port,
            user: endpoint.user.clone(),
            dbname: endpoint.dbname.clone(),
            batch_reads: false,
            stream_in_progress: false,
            binary_values: false,
            endpoint,
            tls,
        })
    }

    /// `user@host:port/db`, without the password.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut s = self.clone();
        s.dbname = dbname.to_string();
        s
    }

    /// The sslmode in effect (`prefer` unless the string or `PGSSLMODE` says otherwise).
    pub fn sslmode(&self) -> SslMode {
        self.endpoint.tls.mode
    }

    /// Whether connections to this server may use TLS: not with sslmode=disable, never over
    /// a Unix socket (as in libpq).
    pub fn may_use_tls(&self) -> bool {
        self.tls.is_some() && !self.is_unix_socket()
    }

    fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/') && self.endpoint.hostaddr.is_none()
    }

    /// The endpoint of one connection: the public fields, the pinned session options and
    /// `application_name`.
    fn endpoint_for(&self, application_name: &str) -> Endpoint {
        let mut e = self.endpoint.clone();
        e.host.clone_from(&self.host);
        e.port = self.port;
        e.user.clone_from(&self.user);
        e.dbname.clone_from(&self.dbname);
        e.application_name = Some(application_name.to_string());
        // The pinned options come last so that they win over the string's `options`.
        e.options = Some(match &self.endpoint.options {
            Some(own) => format!("{own} {SESSION_OPTIONS}"),
            None => SESSION_OPTIONS.to_string(),
        });
        e.connect_timeout = e.connect_timeout.or(Some(DEFAULT_CONNECT_TIMEOUT));
        e
    }

    /// Settings for a tokio-postgres SQL connection with the pinned session options and the
    /// sslmode (use it with [`Self::connect`]'s TLS, see [`Self::may_use_tls`]).
    pub fn sql_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut c = self.endpoint_for(application_name).tokio_postgres_config();
        if !self.may_use_tls() {
            c.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        c
    }

    /// Opens a SQL connection (its driver runs on a spawned task), over TLS as the sslmode
    /// asks.
    pub async fn connect(
        &self,
        application_name: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let config = self.sql_config(application_name);
        match self.tls.as_ref().filter(|_| self.may_use_tls()) {
            Some(tls) => {
                let (client, conn) = config.connect(tls.make_tls_connect()).await?;
                tokio::spawn(drive(conn));
                Ok(client)
            }
            None => {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(drive(conn));
                Ok(client)
            }
        }
    }

    /// Why a connection cannot be opened, as pgmorph's own transport sees it (its errors say
    /// what the SQL driver's do not, e.g. a server refusing the TLS that sslmode requires);
    /// `None` when a connection opens now.
    pub async fn diagnose(&self, application_name: &str) -> Option<pgmorph_replication::Error> {
        let options = ConnectOptions::default();
        let tls = self.tls.as_deref().filter(|_| self.may_use_tls());
        pgmorph_replication::Connection::connect_with_tls(
            &self.endpoint_for(application_name),
            &options,
            tls,
        )
        .await
        .err()
    }

    /// Startup options of a replication connection: `replication=database`, and the small
    /// receive buffer of read batching on TCP.
    pub fn replication_options(&self) -> ConnectOptions {
        ConnectOptions {
            replication: true,
            receive_buffer: self.batching().then_some(BATCH_RECEIVE_BUFFER),
            ..ConnectOptions::default()
        }
    }

    /// Opens a replication (walsender) connection named `application_name`, over TLS as the
    /// sslmode asks.
    pub async fn connect_replication(
        &self,
        application_name: &str,
    ) -> Result<pgmorph_replication::Connection, pgmorph_replication::Error> {
        pgmorph_replication::Connection::connect_with_tls(
            &self.endpoint_for(application_name),
            &self.replication_options(),
            self.tls.as_deref(),
        )
        .await
    }

    /// START_REPLICATION settings for `slot` and `publication` from `start`, on a source of
    /// `server_version_num`: pgoutput protocol 1 with logical messages, a status update every
    /// second, at most 2048 events waiting, and the coalescing pause of read batching on TCP.
    pub fn start_options(
        &self,
        slot: &str,
        publication: &str,
        start: crate::model::Lsn,
        server_version_num: u32,
    ) -> StartOptions {
        let mut o = StartOptions::new(slot, start.into(), vec![publication.to_string()]);
        o.binary = self.binary_values && server_version_num >= BINARY_VALUES_VERSION;
        // Protocol 2 adds blocks of in-progress transactions (source::pgoutput decodes both).
        if self.stream_in_progress {
            o.proto_version = Some(2);
            o.streaming = pgmorph_replication::Streaming::On;
        } else {
            o.proto_version = Some(1);
        }
        o.messages = true;
        o.status_interval = Duration::from_secs(1);
        // Events waiting between the transport and the apply loop: bounds memory when rows are
        // large (each event holds one row change).
        o.channel_capacity = 2048;
        if self.batching() {
            o.read_coalesce = BATCH_PAUSE;
        }
        o
    }

    /// Why a connection failed, when a certificate check is the reason: `e` or one of its
    /// causes is a rustls certificate error (found by type). Says what to change.
    pub fn certificate_problem(&self, e: &(dyn std::error::Error + 'static)) -> Option<String> {
        let mut next = Some(e);
        while let Some(err) = next {
            let rustls_error = err.downcast_ref::<rustls::Error>().or_else(|| {
                err.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(rustls::Error::InvalidCertificate(cert)) = rustls_error {
                return Some(self.explain_certificate(cert));
            }
            next = err.source();
        }
        None
    }

    fn explain_certificate(&self, cert: &rustls::CertificateError) -> String {
        use rustls::CertificateError as C;
        let mode = self.sslmode();
        match cert {
            C::UnknownIssuer | C::BadSignature => format!(
                "the server certificate is not signed by a CA in sslrootcert (sslmode={mode}): {cert}"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server certificate does not match the host \"{}\" (sslmode={mode}): {cert}; connect by a name in the certificate or use sslmode=verify-ca",
                self.host
            ),
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the server certificate is outside its validity period (sslmode={mode}): {cert}")
            }
            other => format!("the server certificate was refused (sslmode={mode}): {other}"),
        }
    }

    fn batching(&self) -> bool {
        self.batch_reads && !self.host.starts_with('/')
    }
}

async fn drive<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Lsn;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn parse(url: &str) -> Result<ConnectionSettings, ConnectionError> {
        ConnectionSettings::from_url_with_env("source", url, None, &env_of(&[]))
    }

    #[test]
    fn read_batching_auto_means_loopback_hosts_only() {
        for host in ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"] {
            assert!(ReadBatching::Auto.applies_to(host), "{host}");
        }
        for host in ["10.0.0.1", "db.example.com", "/var/run/postgresql"] {
            assert!(!ReadBatching::Auto.applies_to(host), "{host}");
        }
        assert!(ReadBatching::On.applies_to("db.example.com"));
        assert!(!ReadBatching::Off.applies_to("127.0.0.1"));
    }

    #[test]
    fn batching_sets_the_transport_options_on_tcp_only() {
        let mut s = parse("postgres://a@127.0.0.1/db").unwrap();
        assert!(!s.batch_reads, "off unless the config asks");
        assert_eq!(s.replication_options().receive_buffer, None);
        assert_eq!(
            s.start_options("slot", "pub", Lsn::ZERO, 150_000)
                .read_coalesce,
            Duration::ZERO
        );
        s.batch_reads = true;
        assert!(s.replication_options().replication);
        assert_eq!(
            s.replication_options().receive_buffer,
            Some(BATCH_RECEIVE_BUFFER)
        );
        let start = s.start_options("slot", "pub", Lsn(42), 150_000);
        assert_eq!(start.read_coalesce, BATCH_PAUSE);
        assert_eq!(
            (start.proto_version, start.messages, start.channel_capacity),
            (Some(1), true, 2048)
        );
        assert_eq!(start.status_interval, Duration::from_secs(1));
        assert_eq!(
            (
                start.slot.as_str(),
                start.start_lsn.0,
                &start.publications[..]
            ),
            ("slot", 42, &["pub".to_string()][..])
        );
        s.host = "/tmp".into();
        assert_eq!(s.replication_options().receive_buffer, None);
        assert_eq!(
            s.start_options("slot", "pub", Lsn::ZERO, 150_000)
                .read_coalesce,
            Duration::ZERO
        );
    }

    #[test]
    fn binary_values_only_when_asked_and_the_source_has_them() {
        let mut s = parse("postgres://a@127.0.0.1/db").unwrap();
        assert!(!s.start_options("slot", "pub", Lsn::ZERO, 170_000).binary);
        s.binary_values = true;
        assert!(s.start_options("slot", "pub", Lsn::ZERO, 140_000).binary);
        assert!(!s.start_options("slot", "pub", Lsn::ZERO, 130_012).binary);
    }

    #[test]
    fn reads_url_parts_and_hides_the_password() {
        let s = parse("postgres://bob:secret@10.0.0.1:6000/shop").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("10.0.0.1", 6000, "bob")
        );
        assert_eq!(s.dbname, "shop");
        assert_eq!(s.endpoint.password(), Some("secret"));
        assert!(!format!("{s:?}").contains("secret"));
        assert!(!s.describe().contains("secret"));
        let sql = format!("{:?}", s.sql_config("app"));
        assert!(!sql.contains("secret"), "{sql}");
    }

    #[test]
    fn reads_conninfo_strings() {
        let s = parse(
            "host=db.example.com port=6001 user=carol password='s p' dbname=shop sslmode=require",
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()),
            ("db.example.com", 6001, "carol", "shop")
        );
        assert_eq!(s.endpoint.password(), Some("s p"));
        assert_eq!(s.sslmode(), SslMode::Require);
        assert_eq!(s.describe(), "carol@db.example.com:6001/shop");
        assert!(!format!("{s:?}").contains("s p"));
        let s = s.with_dbname("other");
        assert_eq!(s.sql_config("x").get_dbname(), Some("other"));
    }

    #[test]
    fn password_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        let pgpass = dir.path().join("pgpass");
        std::fs::write(&pgpass, "*:*:*:bob:frompgpass\n").unwrap();
        std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let env_pw = env_of(&[("PGPASSWORD", "fromenv")]);
        let from = |url: &str, file: Option<&Path>, env: Env<'_>| {
            let s = ConnectionSettings::from_url_with_env("source", url, file, env).unwrap();
            s.endpoint.password().map(str::to_string)
        };
        let url = "postgres://bob:instring@h/db";
        assert_eq!(from(url, Some(&f), &env_pw).as_deref(), Some("instring"));
        let url = "postgres://bob@h/db";
        assert_eq!(from(url, Some(&f), &env_pw).as_deref(), Some("hunter2"));
        assert_eq!(from(url, None, &env_pw).as_deref(), Some("fromenv"));
        let with_passfile = format!("{url}?passfile={}", pgpass.display());
        assert_eq!(
            from(&with_passfile, None, &env_of(&[])).as_deref(),
            Some("frompgpass")
        );
        assert_eq!(from(url, None, &env_of(&[])), None);
    }

    #[test]
    fn a_missing_password_file_is_named() {
        let e = ConnectionSettings::from_url_with_env(
            "destination",
            "postgres://bob@h/db",
            Some(Path::new("/nonexistent/pw")),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("destination password_file /nonexistent/pw"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_wrong_part() {
        let e = parse("postgres://h:notaport/db").unwrap_err().to_string();
        assert!(e.starts_with("source url"), "{e}");
        assert!(e.contains("port \"notaport\" is not a number"), "{e}");
        let e = parse("host=h port=x").unwrap_err().to_string();
        assert!(e.contains("port \"x\" is not a number"), "{e}");
        let e = parse("postgres://u@h/db?sslrootcrt=/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown parameter \"sslrootcrt\""), "{e}");
        let e = parse("host=h sslmode=sometimes").unwrap_err().to_string();
        assert!(e.contains("sslmode"), "{e}");
    }

    #[test]
    fn a_bad_certificate_file_is_a_config_error() {
        let e = parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err();
        assert!(matches!(e, ConnectionError::Tls { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("sslrootcert") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = parse(&format!(
            "host=h user=u sslmode=require sslcert={} sslkey={}",
            junk.display(),
            junk.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslcert"), "{e}");
    }

    #[test]
    fn sslmode_is_no_longer_ignored() {
        let s = parse("postgres://u@h/db").unwrap();
        assert_eq!(s.sslmode(), SslMode::Prefer);
        assert!(s.may_use_tls());
        assert_eq!(
            s.sql_config("x").get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        let s = parse("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(!s.may_use_tls());
        assert_eq!(
            s.sql_config("x").get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        let s = parse("host=h user=u sslmode=require").unwrap();
        assert!(s.may_use_tls());
        assert_eq!(
            s.sql_config("x").get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        // PGSSLMODE fills in what the string leaves out.
        let s = ConnectionSettings::from_url_with_env(
            "source",
            "postgres://u@h/db",
            None,
            &env_of(&[("PGSSLMODE", "require")]),
        )
        .unwrap();
        assert_eq!(s.sslmode(), SslMode::Require);
        // Unix sockets never use TLS.
        let s = parse("host=/tmp user=u sslmode=require").unwrap();
        assert!(!s.may_use_tls());
        assert_eq!(
            s.sql_config("x").get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn session_options_are_pinned() {
        let s = parse("host=h user=u options='-c work_mem=64MB'").unwrap();
        let c = s.sql_config("pgmorph test");
        assert_eq!(c.get_application_name(), Some("pgmorph test"));
        let options = c.get_options().unwrap();
        assert!(options.starts_with("-c work_mem=64MB "), "{options}");
        assert!(options.ends_with(SESSION_OPTIONS), "{options}");
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
    }

    #[test]
    fn certificate_problems_are_explained_by_type() {
        let s = parse("postgres://u@db.example.com/db?sslmode=verify-full&sslrootcert=system");
        // The system store may be empty in a container; any verify-full settings will do.
        let s =
            s.unwrap_or_else(|_| parse("postgres://u@db.example.com/db?sslmode=require").unwrap());
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let m = s.certificate_problem(&io).expect("explained");
        assert!(m.contains("not signed by a CA in sslrootcert"), "{m}");
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
        let m = s.certificate_problem(&io).expect("explained");
        assert!(
            m.contains("does not match the host \"db.example.com\""),
            "{m}"
        );
        let other = std::io::Error::other("connection reset");
        assert_eq!(s.certificate_problem(&other), None);
    }
}
