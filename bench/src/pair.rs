//! A fresh source/destination pair of throwaway clusters for one run.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use pgmorph::cluster::{ClusterOptions, LocalCluster};
use tokio_postgres::Client;

use crate::cli::Transport;
use crate::workload::{self, Sizes, TABLES};

/// Two clusters plus a SQL connection to each. Dropping it stops both servers and deletes
/// their directories.
pub struct Pair {
    /// The source (`wal_level = logical`), filled with the workload.
    pub source: LocalCluster,
    /// The empty destination.
    pub dest: LocalCluster,
    /// A connection to the source's `postgres` database.
    pub src: Client,
    /// A connection to the destination's `postgres` database.
    pub dst: Client,
    /// How the replicators reach both servers.
    pub transport: Transport,
}

/// Size of the data the snapshot moves.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSize {
    /// Rows over all replicated tables.
    pub rows: u64,
    /// Heap + TOAST bytes of the replicated tables on the source (no indexes).
    pub bytes: u64,
}

impl Pair {
    /// Starts both clusters at once and fills the source.
    pub async fn start(
        transport: Transport,
        durable: bool,
        dest_settings: &[(&str, String)],
        sizes: &Sizes,
    ) -> Result<Pair> {
        let mut dest_options = ClusterOptions {
            durable,
            ..ClusterOptions::destination()
        };
        for (name, value) in dest_settings {
            dest_options = dest_options.with_setting(*name, value.clone());
        }
        let source_options = ClusterOptions {
            durable,
            ..ClusterOptions::source()
        };
        let source = tokio::task::spawn_blocking(move || LocalCluster::start(source_options));
        let dest = tokio::task::spawn_blocking(move || LocalCluster::start(dest_options));
        let (source, dest) = (source.await?, dest.await?);
        let source = source.context("starting the source cluster")?;
        let dest = dest.context("starting the destination cluster")?;
        if transport == Transport::Tls {
            crate::tls::enable(&source)?;
            crate::tls::enable(&dest)?;
        }
        let src = source.connect("postgres").await?;
        let dst = dest.connect("postgres").await?;
        workload::populate(&source, &src, sizes).await?;
        Ok(Pair {
            source,
            dest,
            src,
            dst,
            transport,
        })
    }

    /// The `host` replicators use to reach `cluster`: 127.0.0.1, or its socket directory.
    pub fn host_of(&self, cluster: &LocalCluster) -> String {
        match self.transport {
            Transport::Tcp | Transport::Tls => "127.0.0.1".to_string(),
            Transport::Unix => cluster.socket_dir().display().to_string(),
        }
    }

    /// A libpq connection string for `cluster` through [`Pair::host_of`].
    pub fn conninfo_of(&self, cluster: &LocalCluster) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres{}",
            self.host_of(cluster),
            cluster.port(),
            self.tls_param(" sslmode=require")
        )
    }

    /// `param` when the replicators connect with TLS, else nothing.
    fn tls_param(&self, param: &'static str) -> &'static str {
        match self.transport {
            Transport::Tls => param,
            _ => "",
        }
    }

    /// A connection URL for `cluster` through [`Pair::host_of`].
    pub fn url_of(&self, cluster: &LocalCluster) -> String {
        let host = self.host_of(cluster).replace('/', "%2F");
        format!(
            "postgres://postgres@{host}:{}/postgres{}",
            cluster.port(),
            self.tls_param("?sslmode=require")
        )
    }

    /// Creates the replicated tables on the destination from `pg_dump --schema-only` of the
    /// source (what native logical replication needs; the COPY pipe uses it too).
    pub async fn copy_schema(&self) -> Result<()> {
        let mut cmd = tokio::process::Command::new(self.source.bin_dir().join("pg_dump"));
        cmd.args(["--schema-only", "--no-owner", "--no-privileges"])
            .args(["-h", "127.0.0.1", "-p", &self.source.port().to_string()])
            .args(["-U", "postgres"])
            .stdin(Stdio::null());
        for table in TABLES {
            cmd.args(["-t", table]);
        }
        cmd.arg("postgres");
        let output = cmd.output().await.context("running pg_dump")?;
        if !output.status.success() {
            bail!(
                "pg_dump failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let sql = String::from_utf8(output.stdout).context("pg_dump output is not UTF-8")?;
        self.dest
            .psql("postgres", &sql)
            .context("creating the tables on the destination")?;
        Ok(())
    }

    /// Under `--transport tls`, fails unless every WAL sender on the source (the replicator's
    /// replication connection) is encrypted.
    pub async fn check_tls(&self) -> Result<()> {
        if self.transport != Transport::Tls {
            return Ok(());
        }
        let row = self
            .src
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) \
                 FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
                &[],
            )
            .await?;
        let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
        if all == 0 || encrypted != all {
            bail!("--transport tls: {encrypted} of {all} WAL senders use TLS");
        }
        Ok(())
    }

    /// Rows and bytes of the replicated tables on the source.
    pub async fn snapshot_size(&self) -> Result<SnapshotSize> {
        let mut size = SnapshotSize { rows: 0, bytes: 0 };
        for table in TABLES {
            let row = self
                .src
                .query_one(
                    &format!("SELECT count(*), pg_table_size('{table}') FROM {table}"),
                    &[],
                )
                .await?;
            size.rows += row.get::<_, i64>(0) as u64;
            size.bytes += row.get::<_, i64>(1) as u64;
        }
        Ok(size)
    }
}
