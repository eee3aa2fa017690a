//! Errors raised while managing a throwaway PostgreSQL cluster.

use std::io;

/// Everything that can go wrong while starting, using or stopping a [`super::LocalCluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL installation with an `initdb` binary could be found.
    #[error("no PostgreSQL installation found: {0}")]
    BinDirNotFound(String),
    /// A filesystem or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being attempted.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An external program (initdb, pg_ctl, psql) exited unsuccessfully.
    #[error("`{program}` failed ({status}):\n{output}")]
    Command {
        /// The program and its most relevant arguments.
        program: String,
        /// The exit status, as text.
        status: String,
        /// Its captured stderr (and stdout, if stderr was empty).
        output: String,
    },
    /// The server could not be started.
    #[error(
        "PostgreSQL failed to start after {attempts} attempt(s); server log tail:\n{log_tail}"
    )]
    Start {
        /// How many ports were tried.
        attempts: u32,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// Connecting with `tokio-postgres` failed.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// Where we tried to connect (without the password).
        target: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// [`super::LocalCluster::connect`] was called outside a tokio runtime.
    #[error("LocalCluster::connect must be called from within a tokio runtime")]
    NoRuntime,
}

impl ClusterError {
    /// Wraps an I/O error with a description of what was being attempted.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}
