//! The [`LocalCluster`] handle: accessors, `psql` and `tokio-postgres` connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::config::{percent_encode, quote_ident};
use super::tools::Tools;
use super::{ClusterError, ClusterOptions};

/// The superuser created by initdb.
pub const SUPERUSER: &str = "postgres";

/// How many lines [`LocalCluster::log_tail`] returns.
const LOG_TAIL_LINES: usize = 50;

/// A throwaway PostgreSQL cluster in a temporary directory, listening on
/// 127.0.0.1. Dropping it shuts the server down (immediate mode) and deletes
/// the directory, also while a test is unwinding from a panic.
#[derive(Debug)]
pub struct LocalCluster {
    pub(super) options: ClusterOptions,
    pub(super) tools: Tools,
    /// The temporary root; `None` only once dropped.
    pub(super) root: Option<TempDir>,
    pub(super) root_path: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) log_path: PathBuf,
    /// `postgresql.conf` exactly as initdb wrote it.
    pub(super) base_conf: String,
    pub(super) port: u16,
    pub(super) running: bool,
}

impl LocalCluster {
    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser name, always `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// A connection URL: `postgres://postgres[:password]@127.0.0.1:PORT/dbname`
    /// (password and database name percent-encoded).
    pub fn url(&self, dbname: &str) -> String {
        let password = match &self.options.password {
            Some(password) => format!(":{}", percent_encode(password)),
            None => String::new(),
        };
        format!(
            "postgres://{SUPERUSER}{password}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// A `tokio-postgres` configuration for `dbname` (TCP, with the password if any).
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("pgmorph-cluster")
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = &self.options.password {
            config.password(password);
        }
        config
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.tools.bin_dir
    }

    /// The directory holding the Unix socket (also the temporary root).
    pub fn socket_dir(&self) -> &Path {
        &self.root_path
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The options the cluster runs with (including settings added by
    /// [`LocalCluster::set_setting_and_restart`]).
    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// Whether the server is currently started.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The last ~50 lines of the server log, for test failure messages.
    pub fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES),
            Err(e) => format!("(cannot read {}: {e})", self.log_path.display()),
        }
    }

    /// Runs `sql` through `psql -X -q -v ON_ERROR_STOP=1 -At` over the Unix
    /// socket as `postgres` (always trusted, even with a password set) and
    /// returns its stdout without trailing newlines. The SQL is fed on stdin,
    /// so it may hold several statements and psql meta-commands; `-q` keeps
    /// command tags such as `CREATE TABLE` out of the output.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = self.tools.command("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h"])
            .arg(&self.root_path)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", dbname]);
        let output = self
            .tools
            .run(cmd, &format!("psql -d {dbname}"), Some(sql))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ok(stdout.trim_end_matches(['\n', '\r']).to_owned())
    }

    /// Creates database `name` (quoted as an identifier).
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(drop)
    }

    /// Connects to `dbname` over TCP and spawns the connection task on the
    /// current tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, ClusterError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClusterError::NoRuntime)?;
        let (client, connection) = self
            .config(dbname)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|source| ClusterError::Connect {
                target: format!("{SUPERUSER}@127.0.0.1:{}/{dbname}", self.port),
                source,
            })?;
        runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "local cluster connection ended with an error");
            }
        });
        Ok(client)
    }
}

/// The last `lines` lines of `text`.
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
