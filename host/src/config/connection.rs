//! Connection settings for one server, from a `postgres://` URL plus password sources.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::Host;

/// Session settings pinned on every connection so that values render the same text on both
/// sides (pgoutput, COPY and the destination all use them).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres \
     -c extra_float_digits=3 -c bytea_output=hex -c idle_in_transaction_session_timeout=0 \
     -c statement_timeout=0 -c client_min_messages=warning";

/// A connection URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The URL does not parse.
    #[error("{side} url is not a valid postgres:// URL: {message}")]
    Url {
        /// `source` or `destination`.
        side: &'static str,
        /// The parser's message.
        message: String,
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
    /// Password (empty when none); never printed.
    password: String,
    /// Database name.
    pub dbname: String,
    /// Read the replication stream in batches (see [`ReadBatching`]).
    pub batch_reads: bool,
}

/// TCP receive buffer of a batching replication connection: small enough that the window
/// closes during a pause.
const BATCH_RECEIVE_BUFFER: u32 = 16 * 1024;
/// How long a batching replication connection waits after a busy read.
const BATCH_PAUSE: Duration = Duration::from_millis(1);

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
        write!(f, "{}", self.describe())
    }
}

impl ConnectionSettings {
    /// Parses `url`; the password comes from the URL, else `password_file`, else `PGPASSWORD`.
    pub fn from_url(
        side: &'static str,
        url: &str,
        password_file: Option<&Path>,
    ) -> Result<Self, ConnectionError> {
        let parsed: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| ConnectionError::Url {
                    side,
                    message: e.to_string(),
                })?;
        let host = match parsed.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "127.0.0.1".to_string(),
        };
        let port = parsed.get_ports().first().copied().unwrap_or(5432);
        let user = parsed
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("PGUSER").ok())
            .unwrap_or_else(|| "postgres".to_string());
        let dbname = parsed
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        let password = if let Some(p) = parsed.get_password() {
            String::from_utf8_lossy(p).into_owned()
        } else if let Some(file) = password_file {
            std::fs::read_to_string(file)
                .map_err(|source| ConnectionError::PasswordFile {
                    side,
                    path: file.display().to_string(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string()
        } else {
            std::env::var("PGPASSWORD").unwrap_or_default()
        };
        Ok(Self {
            side,
            host,
            port,
            user,
            password,
            batch_reads: false,
            dbname,
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

    /// Settings for a tokio-postgres SQL connection with the pinned session options.
    pub fn sql_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            c.host_path(&self.host);
        } else {
            c.host(&self.host);
        }
        c.port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(application_name)
            .options(SESSION_OPTIONS)
            .connect_timeout(Duration::from_secs(10));
        if !self.password.is_empty() {
            c.password(&self.password);
        }
        c
    }

    /// Opens a SQL connection (its driver runs on a spawned task).
    pub async fn connect(
        &self,
        application_name: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = self
            .sql_config(application_name)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
        Ok(client)
    }

    /// Settings for a replication connection on `slot` and `publication`.
    pub fn replication_config(
        &self,
        slot: &str,
        publication: &str,
    ) -> pgwire_replication::ReplicationConfig {
        let mut cfg = pgwire_replication::ReplicationConfig::new(
            &self.host,
            &self.user,
            &self.password,
            &self.dbname,
            slot,
            publication,
        )
        .with_port(self.port)
        .with_options(SESSION_OPTIONS)
        .with_application_name(slot)
        .with_status_interval(Duration::from_secs(1))
        .with_wakeup_interval(Duration::from_secs(5))
        // Events waiting between the transport and the apply loop: bounds memory when rows are
        // large (each event holds one row change).
        .with_buffer_size(2048);
        if self.batch_reads && !self.host.starts_with('/') {
            cfg = cfg
                .with_receive_buffer(BATCH_RECEIVE_BUFFER)
                .with_read_coalesce(BATCH_PAUSE);
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut s =
            ConnectionSettings::from_url("source", "postgres://a@127.0.0.1/db", None).unwrap();
        assert!(!s.batch_reads, "off unless the config asks");
        assert_eq!(s.replication_config("slot", "pub").receive_buffer, None);
        s.batch_reads = true;
        let cfg = s.replication_config("slot", "pub");
        assert_eq!(cfg.receive_buffer, Some(BATCH_RECEIVE_BUFFER));
        assert_eq!(cfg.read_coalesce, BATCH_PAUSE);
        s.host = "/tmp".into();
        assert_eq!(s.replication_config("slot", "pub").receive_buffer, None);
    }

    #[test]
    fn reads_url_parts_and_hides_the_password() {
        let s = ConnectionSettings::from_url(
            "source",
            "postgres://bob:secret@10.0.0.1:6000/shop",
            None,
        )
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str()),
            ("10.0.0.1", 6000, "bob")
        );
        assert_eq!(s.dbname, "shop");
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn reads_the_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        let s = ConnectionSettings::from_url("source", "postgres://bob@h/db", Some(&f)).unwrap();
        assert_eq!(s.password, "hunter2");
    }

    #[test]
    fn rejects_a_bad_url() {
        let e =
            ConnectionSettings::from_url("source", "postgres://h:notaport/db", None).unwrap_err();
        assert!(e.to_string().starts_with("source url"), "{e}");
    }
}
