//! Throwaway PostgreSQL clusters started from the installed binaries, for
//! tests, benchmarks and demos.
//!
//! ```no_run
//! use pgmorph::cluster::{ClusterOptions, LocalCluster};
//!
//! let source = LocalCluster::start(ClusterOptions::source())?;
//! assert_eq!(source.psql("postgres", "SHOW wal_level")?, "logical");
//! println!("{}", source.url("postgres"));
//! # Ok::<(), pgmorph::cluster::ClusterError>(())
//! ```
//!
//! Each cluster lives in its own temporary directory (`pgmorph-pg-*`) holding
//! the data directory, the Unix socket and the server log, and listens on a
//! free port on 127.0.0.1. When the process runs as root, `initdb`, `pg_ctl`
//! and `psql` run as the user `nobody`, because PostgreSQL refuses to run as
//! root. Dropping a [`LocalCluster`] stops the server and deletes the directory.

mod bin;
mod config;
mod error;
mod lifecycle;
mod local;
mod options;
mod tls;
mod tools;
mod user;

#[cfg(test)]
mod tests;

pub use bin::{
    cache_dir, find_bin_dir, find_bin_dir_for, ServerRole, BIN_DIR_ENV, CACHE_ENV,
    DEST_BIN_DIR_ENV, SOURCE_BIN_DIR_ENV, SYSTEM_ROOT_ENV,
};
pub use error::ClusterError;
pub use local::{LocalCluster, SUPERUSER};
pub use options::ClusterOptions;
