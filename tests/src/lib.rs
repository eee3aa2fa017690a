//! Shared helpers for the end-to-end tests: a source and destination server pair, connector
//! runs (in-process or as the real binary), waiting on conditions, and table comparison.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgmorph::cluster::{find_bin_dir_for, ClusterOptions, LocalCluster, ServerRole};
use pgmorph::config::Config;
use pgmorph::pipeline::{self, Mode, ReloadOptions, RunError, RunOptions};
use pgmorph::transform::{Identity, Transform};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A throwaway source (wal_level=logical) and destination server.
pub struct Pair {
    /// The source server.
    pub source: LocalCluster,
    /// The destination server.
    pub dest: LocalCluster,
    /// A directory for config files, removed at the end.
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// Starts both servers (and sends the connector's logs to the test's output).
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(ClusterOptions::destination())
    }

    /// Starts both servers, the destination with `dest` options.
    pub fn start_with(dest: ClusterOptions) -> anyhow::Result<Self> {
        Self::start_with_source(ClusterOptions::source(), dest)
    }

    /// Starts both servers with the given options.
    pub fn start_with_source(source: ClusterOptions, dest: ClusterOptions) -> anyhow::Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("PGMORPH_LOG")
                    .unwrap_or_else(|_| "info,tokio_postgres=warn,pgmorph_replication=warn".into()),
            )
            .with_test_writer()
            .try_init();
        Ok(Self {
            source: start_as(ServerRole::Source, source).context("source server")?,
            dest: start_as(ServerRole::Destination, dest).context("destination server")?,
            dir: tempfile::tempdir()?,
        })
    }

    /// SQL connections to the source and destination `postgres` databases.
    pub async fn clients(&self) -> anyhow::Result<(Client, Client)> {
        Ok((
            self.source.connect("postgres").await?,
            self.dest.connect("postgres").await?,
        ))
    }

    /// Config text for connector `name`; `source_extra` lines go into `[source]`, `top` before it.
    pub fn config_text(&self, name: &str, top: &str, source_extra: &str) -> String {
        format!(
            "name = \"{name}\"\n{top}\n[source]\nurl = \"{}\"\n{source_extra}\n[destination]\nurl = \"{}\"\n",
            self.source.url("postgres"),
            self.dest.url("postgres"),
        )
    }

    /// Writes a config file and parses it.
    pub fn config(
        &self,
        name: &str,
        top: &str,
        source_extra: &str,
    ) -> anyhow::Result<(PathBuf, Config)> {
        let text = self.config_text(name, top, source_extra);
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text)?;
        let config = Config::parse(&text, &path)?;
        Ok((path, config))
    }
}

/// Starts a server of `role` with that role's binaries: `$PGMORPH_SOURCE_PG_BINDIR` or
/// `$PGMORPH_DEST_PG_BINDIR` when set (a cross-version pair), else the usual search.
pub fn start_as(role: ServerRole, options: ClusterOptions) -> anyhow::Result<LocalCluster> {
    Ok(LocalCluster::start_with_bin_dir(
        find_bin_dir_for(role)?,
        options,
    )?)
}

/// The server's major version (`server_version_num / 10000`), e.g. 14 or 18.
pub async fn server_major(client: &Client) -> anyhow::Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?;
    Ok(row.get::<_, i32>(0) as u32 / 10_000)
}

/// A connector running in this process.
pub struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Starts a connector with no plugins.
    pub fn start(config: &Config, mode: Mode) -> Self {
        Self::start_with(config, mode, Box::new(Identity))
    }

    /// Starts a connector with the given transform.
    pub fn start_with(config: &Config, mode: Mode, transform: Box<dyn Transform>) -> Self {
        Self::start_full(config, mode, transform, None)
    }

    /// Starts a connector that reloads plugins and config as `reload` says.
    pub fn start_full(
        config: &Config,
        mode: Mode,
        transform: Box<dyn Transform>,
        reload: Option<ReloadOptions>,
    ) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let config = config.clone();
        let handle = tokio::spawn(async move {
            pipeline::run(
                &config,
                RunOptions {
                    mode,
                    shutdown,
                    transform,
                    reload,
                    wait: Default::default(),
                },
            )
            .await
        });
        Self { stop, handle }
    }

    /// Whether the connector has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Requests a clean stop and returns the run's result.
    pub async fn stop(self) -> Result<(), RunError> {
        let _ = self.stop.send(true);
        self.handle.await.expect("connector task panicked")
    }

    /// Waits for the run to end by itself and returns its result.
    pub async fn join(self) -> Result<(), RunError> {
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("connector did not finish in time")
            .expect("connector task panicked")
    }
}

/// Polls `sql` (one boolean) until it is true; fails after [`DEADLINE`] or if `running` ended.
pub async fn wait_until(
    client: &Client,
    sql: &str,
    running: Option<&Running>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(Some(row)) = client.query_opt(sql, &[]).await {
            if row.get::<_, Option<bool>>(0) == Some(true) {
                return Ok(());
            }
        }
        if running.is_some_and(Running::is_finished) {
            bail!("the connector stopped while waiting for: {sql}");
        }
        if start.elapsed() > DEADLINE {
            bail!("timed out waiting for: {sql}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until connector `name` is streaming changes.
pub async fn wait_streaming(
    dest: &Client,
    name: &str,
    running: Option<&Running>,
) -> anyhow::Result<()> {
    wait_until(
        dest,
        &format!("SELECT stage = 'change data capture' AND state = 'polling' FROM pgmorph.state WHERE name = '{name}'"),
        running,
    )
    .await
}

/// Row count and an order-independent digest of every row's text form.
pub async fn digest(client: &Client, table: &str) -> anyhow::Result<(i64, String)> {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
            ),
            &[],
        )
        .await
        .with_context(|| format!("digest of {table}"))?;
    Ok((row.get(0), row.get(1)))
}

/// Waits until each destination table has the same rows as its source table.
pub async fn wait_same(
    src: &Client,
    dst: &Client,
    tables: &[(&str, &str)],
    running: Option<&Running>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut diff = None;
        for (s, d) in tables {
            let a = digest(src, s).await?;
            let b = digest(dst, d).await.unwrap_or((-1, String::new()));
            if a != b {
                diff = Some(format!("{s} has {} rows, {d} has {}", a.0, b.0));
                break;
            }
        }
        let Some(diff) = diff else { return Ok(()) };
        if running.is_some_and(Running::is_finished) {
            bail!("the connector stopped before the tables matched: {diff}");
        }
        if start.elapsed() > DEADLINE {
            bail!("tables still differ after {DEADLINE:?}: {diff}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `pgmorph` binary, built if it is missing.
pub fn pgmorph_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/pgmorph
    let profile_dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = profile_dir.join("pgmorph");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "pgmorph", "--bin", "pgmorph"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the pgmorph binary failed");
    }
    bin
}

/// Runs `pgmorph ARGS` to completion and returns (exit success, stdout, stderr).
pub fn run_bin(args: &[&str]) -> (bool, String, String) {
    run_bin_with_env(args, &[])
}

/// [`run_bin`] with extra environment variables.
pub fn run_bin_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> (bool, String, String) {
    let out = Command::new(pgmorph_bin())
        .args(args)
        .env("PGMORPH_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run pgmorph");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `pgmorph` process started by a test; killed when dropped, so a failing test leaves none.
pub struct BinProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl BinProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `within` for the process to exit by itself; returns its exit status.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > within {
                bail!(
                    "still running after {within:?}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process without warning (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for its exit status.
    pub fn terminate(&mut self) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()
    }

    /// The process's peak resident memory so far, in MiB (`VmHWM`), if it is still running.
    pub fn peak_rss_mib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024)
    }

    /// Stops the process with SIGTERM and asserts that it exited with status 0 (a clean
    /// stop), showing its log otherwise.
    pub fn stop_cleanly(&mut self) -> anyhow::Result<()> {
        let status = self.terminate()?;
        assert!(
            status.success(),
            "exit status {status}: {}",
            std::fs::read_to_string(&self.log)?
        );
        Ok(())
    }
}

impl Drop for BinProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `pgmorph ARGS` in the background, appending its log to `log`.
pub fn spawn_bin<S: AsRef<std::ffi::OsStr>>(args: &[S], log: &std::path::Path) -> BinProcess {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let child = Command::new(pgmorph_bin())
        .args(args)
        .env("PGMORPH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn pgmorph");
    BinProcess {
        child,
        log: log.to_path_buf(),
    }
}

/// The identity transform, but asking for the row path: COPY text decoded into cells, passed
/// through the row step and encoded again, and the same for every change, with no plugin.
/// It checks the core's row path on its own and measures it apart from crossing into Wasm.
pub struct RowPathOnly;

impl pgmorph::transform::Transform for RowPathOnly {
    fn map_table(
        &mut self,
        source: std::sync::Arc<pgmorph::model::TableSchema>,
        dest_schema: &str,
    ) -> Result<pgmorph::model::TableMapping, pgmorph::transform::TransformError> {
        let mut m = pgmorph::model::TableMapping::identity(source, dest_schema);
        m.transforms_rows = true;
        Ok(m)
    }

    fn transform_rows(
        &mut self,
        _mapping: &pgmorph::model::TableMapping,
        _batch: &mut Vec<pgmorph::model::RowChange>,
    ) -> Result<pgmorph::transform::RowOutcome, pgmorph::transform::TransformError> {
        Ok(Default::default())
    }
}

/// A steady stream of one-row transactions into `events (writer int, seq int, payload text)`
/// on the source, one every few milliseconds, until stopped.
pub struct Load {
    stop: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<i32>>,
}

impl Load {
    /// Starts writing through `client`, one row each `pause`.
    pub fn start(client: Client, pause: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut seq = 0;
            while !*stopped.borrow_and_update() {
                client
                    .batch_execute(&format!(
                        "INSERT INTO events VALUES (1, {seq}, repeat('p', {seq} % 50))"
                    ))
                    .await?;
                seq += 1;
                let _ = tokio::time::timeout(pause, stopped.changed()).await;
            }
            Ok(seq)
        });
        Self { stop, handle }
    }

    /// Stops writing; returns how many rows were written.
    pub async fn stop(self) -> anyhow::Result<i32> {
        let _ = self.stop.send(true);
        self.handle.await?
    }
}

/// Rows of `table` whose `seq` appears more than once (a change applied twice).
pub async fn duplicated(client: &Client, table: &str) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            &format!("SELECT count(*) - count(DISTINCT seq) FROM {table}"),
            &[],
        )
        .await?
        .get(0))
}

/// Keeps writing small transactions (an event and a counter update) through source restarts,
/// reconnecting and going on after the highest sequence the source has; returns how many
/// transactions went through.
pub fn start_writer(
    url: String,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<u64>>,
) {
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let mut done = 0u64;
        while !*stopped.borrow() {
            let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(conn);
            let next: i32 = match client
                .query_one("SELECT coalesce(max(seq), 0) + 1 FROM events", &[])
                .await
            {
                Ok(row) => row.get(0),
                Err(_) => continue,
            };
            for seq in next.. {
                if *stopped.borrow() {
                    break;
                }
                let sql = format!(
                    "BEGIN; INSERT INTO events VALUES (1, {seq}, repeat('p', {seq} % 50)); \
                     UPDATE counters SET n = n + 1 WHERE id = {seq} % 10 + 1; COMMIT;"
                );
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                done += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        Ok(done)
    });
    (stop, handle)
}

/// Terminates the server's backends matching `filter` (a `pg_stat_activity` condition).
pub fn terminate(cluster: &pgmorph::cluster::LocalCluster, filter: &str) -> anyhow::Result<()> {
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE {filter} AND pid <> pg_backend_pid()"
            ),
        )
        .context("terminating backends")?;
    Ok(())
}

/// Stops a [`start_writer`] writer, waits until every table in `tables` equals its source
/// (showing the connector's `log` if not), and returns (writer transactions, event rows on the
/// destination, rows of `events` applied twice).
pub async fn stop_writer_and_compare(
    pair: &Pair,
    writer: (
        watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<u64>>,
    ),
    tables: &[(&str, &str)],
    log: &std::path::Path,
) -> anyhow::Result<(u64, i64, i64)> {
    let _ = writer.0.send(true);
    let written = writer.1.await??;
    let (src, dst) = pair.clients().await?;
    wait_same(&src, &dst, tables, None)
        .await
        .map_err(|e| e.context(std::fs::read_to_string(log).unwrap_or_default()))?;
    let doubled = duplicated(&dst, "postgres.events").await?;
    let rows: i64 = dst
        .query_one("SELECT count(*) FROM postgres.events", &[])
        .await?
        .get(0);
    Ok((written, rows, doubled))
}

/// Creates connector `name`'s publication of `public.<table>` and installs its source DDL
/// capture, as `setup-source --ddl` does, before the connector first starts.
pub async fn capture_source_ddl(
    src: &Client,
    config: &Config,
    name: &str,
    table: &str,
) -> anyhow::Result<()> {
    let wanted = pgmorph::source::publication::Wanted {
        name: &config.slot_name(),
        tables: &[pgmorph::model::TableName::new("public", table)],
        filters: &Default::default(),
        via_root: true,
        keep_filters: true,
        server_version_num: pgmorph::source::versions::server_version_num(src).await?,
    };
    pgmorph::source::publication::ensure(src, &wanted, true).await?;
    let follow = pgmorph::source::ddl_trigger::Follow::default();
    pgmorph::source::ddl_trigger::install(src, name, &config.slot_name(), &follow).await?;
    Ok(())
}
