//! Creating, starting, stopping and tearing down a [`LocalCluster`].

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::config::{free_port, hba_allows_loopback_replication, render};
use super::local::{tail, SUPERUSER};
use super::tools::Tools;
use super::user::RunAs;
use super::{find_bin_dir, ClusterError, ClusterOptions, LocalCluster};

/// How many ports to try when the chosen one is taken before the server binds it.
const START_ATTEMPTS: u32 = 5;
/// Prefix of the temporary directory holding data dir, socket and log.
const TEMP_PREFIX: &str = "pgmorph-pg-";

/// Result of one `pg_ctl start`.
enum StartOutcome {
    Started,
    PortInUse(String),
    Failed(String),
}

impl LocalCluster {
    /// Creates a fresh cluster with the binaries from [`find_bin_dir`] and
    /// starts it on a free loopback port. Everything created is removed again
    /// if this fails part-way.
    pub fn start(options: ClusterOptions) -> Result<LocalCluster, ClusterError> {
        Self::start_with_bin_dir(find_bin_dir()?, options)
    }

    /// Like [`LocalCluster::start`], with an explicit PostgreSQL bin directory.
    pub fn start_with_bin_dir(
        bin_dir: PathBuf,
        options: ClusterOptions,
    ) -> Result<LocalCluster, ClusterError> {
        let run_as = RunAs::detect();
        let root = create_root(run_as)?;
        let root_path = root.path().to_path_buf();
        let mut cluster = LocalCluster {
            options,
            tools: Tools {
                bin_dir,
                home: root_path.clone(),
                run_as,
            },
            root: Some(root),
            data_dir: root_path.join("data"),
            log_path: root_path.join("server.log"),
            root_path,
            base_conf: String::new(),
            port: 0,
            running: false,
        };
        // From here on, dropping `cluster` on error cleans everything up.
        cluster.init()?;
        cluster.start_on_free_port()?;
        tracing::debug!(port = cluster.port, dir = %cluster.root_path.display(), "local cluster started");
        Ok(cluster)
    }

    /// Fast shutdown; keeps the data directory. Does nothing if not running.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if self.pid_file().exists() {
            self.pg_ctl_stop("fast")?;
        }
        self.running = false;
        Ok(())
    }

    /// Stops the server (if running) and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop()?;
        self.start_again()
    }

    /// Stops the server as a crash would (`pg_ctl -m immediate`: WAL not yet written is lost,
    /// the next start recovers) and starts it again on the same port.
    pub fn crash_and_restart(&mut self) -> Result<(), ClusterError> {
        if self.pid_file().exists() {
            self.pg_ctl_stop("immediate")?;
        }
        self.running = false;
        self.start_again()
    }

    fn start_again(&mut self) -> Result<(), ClusterError> {
        match self.start_once()? {
            StartOutcome::Started => Ok(()),
            StartOutcome::PortInUse(log_tail) | StartOutcome::Failed(log_tail) => {
                Err(ClusterError::Start {
                    attempts: 1,
                    log_tail,
                })
            }
        }
    }

    /// Sets `name = 'value'` in `postgresql.conf` (replacing an earlier value
    /// set this way) and restarts, e.g. `wal_level`/`replica` to test a
    /// misconfigured source.
    pub fn set_setting_and_restart(&mut self, name: &str, value: &str) -> Result<(), ClusterError> {
        let settings = &mut self.options.settings;
        settings.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        settings.push((name.to_owned(), value.to_owned()));
        self.restart()
    }

    fn pid_file(&self) -> PathBuf {
        self.data_dir.join("postmaster.pid")
    }

    /// Creates the data directory and runs initdb.
    fn init(&mut self) -> Result<(), ClusterError> {
        self.make_data_dir()?;
        let pwfile = match &self.options.password {
            Some(password) => Some(self.write_pwfile(password)?),
            None => None,
        };
        let result = self.initdb("C.UTF-8", pwfile.as_deref()).or_else(|error| {
            tracing::debug!(%error, "initdb --locale=C.UTF-8 failed; retrying with --locale=C");
            fs::remove_dir_all(&self.data_dir)
                .map_err(|e| ClusterError::io("removing the failed data directory", e))?;
            self.make_data_dir()?;
            self.initdb("C", pwfile.as_deref())
        });
        if let Some(path) = &pwfile {
            let _ = fs::remove_file(path);
        }
        result?;
        let conf = self.data_dir.join("postgresql.conf");
        self.base_conf = fs::read_to_string(&conf).map_err(|e| io_at("reading", &conf, e))?;
        self.ensure_replication_hba()
    }

    fn initdb(&self, locale: &str, pwfile: Option<&Path>) -> Result<(), ClusterError> {
        let mut cmd = self.tools.command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
            .arg(format!("--locale={locale}"));
        match pwfile {
            None => {
                cmd.arg("--auth=trust");
            }
            Some(path) => {
                let mut arg = OsString::from("--pwfile=");
                arg.push(path);
                cmd.args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(arg);
            }
        }
        self.tools.run(cmd, "initdb", None).map(drop)
    }

    fn make_data_dir(&self) -> Result<(), ClusterError> {
        let dir = &self.data_dir;
        fs::create_dir(dir).map_err(|e| io_at("creating", dir, e))?;
        fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(|e| io_at("chmod 0700", dir, e))?;
        give_to(self.tools.run_as, dir)
    }

    /// Writes the initdb password file, readable only by the server user.
    fn write_pwfile(&self, password: &str) -> Result<PathBuf, ClusterError> {
        if password.contains(['\n', '\r']) {
            let error = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "password contains a line break",
            );
            return Err(ClusterError::io("writing the initdb password file", error));
        }
        let path = self.root_path.join("pwfile");
        fs::write(&path, format!("{password}\n")).map_err(|e| io_at("writing", &path, e))?;
        fs::set_permissions(&path, Permissions::from_mode(0o600))
            .map_err(|e| io_at("chmod 0600", &path, e))?;
        give_to(self.tools.run_as, &path)?;
        Ok(path)
    }

    /// initdb's default `pg_hba.conf` allows replication from 127.0.0.1;
    /// add the line should a future version not.
    fn ensure_replication_hba(&self) -> Result<(), ClusterError> {
        let path = self.data_dir.join("pg_hba.conf");
        let hba = fs::read_to_string(&path).map_err(|e| io_at("reading", &path, e))?;
        if hba_allows_loopback_replication(&hba) {
            return Ok(());
        }
        let method = match self.options.password {
            Some(_) => "scram-sha-256",
            None => "trust",
        };
        let line = format!("\nhost replication all 127.0.0.1/32 {method}\n");
        fs::write(&path, hba + &line).map_err(|e| io_at("writing", &path, e))
    }

    fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            match self.start_once()? {
                StartOutcome::Started => return Ok(()),
                StartOutcome::PortInUse(_) if attempt < START_ATTEMPTS => {
                    tracing::debug!(port = self.port, "port taken; retrying with another");
                }
                StartOutcome::PortInUse(log_tail) | StartOutcome::Failed(log_tail) => {
                    return Err(ClusterError::Start {
                        attempts: attempt,
                        log_tail,
                    });
                }
            }
        }
    }

    /// Writes the configuration for the current port and runs `pg_ctl start`.
    fn start_once(&mut self) -> Result<StartOutcome, ClusterError> {
        let conf = self.data_dir.join("postgresql.conf");
        let text = self.base_conf.clone() + &render(&self.options, self.port, &self.root_path);
        fs::write(&conf, text).map_err(|e| io_at("writing", &conf, e))?;
        let log_offset = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let mut cmd = self.tools.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", "60", "start"]);
        match self.tools.run(cmd, "pg_ctl start", None) {
            Ok(_) => {
                self.running = true;
                Ok(StartOutcome::Started)
            }
            Err(ClusterError::Command { output, .. }) => {
                let log = read_from(&self.log_path, log_offset);
                let details = format!("pg_ctl: {output}\n{}", tail(&log, 50));
                if log.contains("Address already in use") {
                    Ok(StartOutcome::PortInUse(details))
                } else {
                    Ok(StartOutcome::Failed(details))
                }
            }
            Err(other) => Err(other),
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), ClusterError> {
        let mut cmd = self.tools.command("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        self.tools
            .run(cmd, &format!("pg_ctl stop -m {mode}"), None)
            .map(drop)
    }

    /// Last resort when `pg_ctl stop` failed: SIGKILL the postmaster.
    fn kill_postmaster(&self) {
        let Ok(pid_file) = fs::read_to_string(self.pid_file()) else {
            return;
        };
        let Some(pid) = pid_file.lines().next().map(str::trim) else {
            return;
        };
        let mut cmd = self.tools.command("pg_ctl");
        cmd.args(["kill", "KILL", pid]);
        if let Err(error) = self.tools.run(cmd, "pg_ctl kill KILL", None) {
            tracing::warn!(%error, "could not kill the local cluster's postmaster");
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.pid_file().exists() {
            if let Err(error) = self.pg_ctl_stop("immediate") {
                tracing::warn!(%error, "stopping the local cluster failed; killing it");
                self.kill_postmaster();
            }
        }
        self.running = false;
        if let Some(root) = self.root.take() {
            if let Err(error) = root.close() {
                tracing::warn!(%error, dir = %self.root_path.display(), "removing the local cluster's directory failed");
            }
        }
    }
}

/// Creates the temporary root (mode 0755, owned by `run_as`). When switching
/// users, falls back to /tmp if `$TMPDIR` is not traversable by others.
fn create_root(run_as: Option<RunAs>) -> Result<TempDir, ClusterError> {
    let mut parent = std::env::temp_dir();
    if run_as.is_some() && !traversable_by_others(&parent) {
        parent = PathBuf::from("/tmp");
    }
    let root = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(&parent)
        .map_err(|e| io_at("creating a temporary directory in", &parent, e))?;
    fs::set_permissions(root.path(), Permissions::from_mode(0o755))
        .map_err(|e| io_at("chmod 0755", root.path(), e))?;
    give_to(run_as, root.path())?;
    Ok(root)
}

fn traversable_by_others(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    dir.ancestors()
        .all(|path| fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Hands `path` to the unprivileged user, if we are switching users.
fn give_to(run_as: Option<RunAs>, path: &Path) -> Result<(), ClusterError> {
    match run_as {
        Some(user) => {
            chown(path, Some(user.uid), Some(user.gid)).map_err(|e| io_at("chown", path, e))
        }
        None => Ok(()),
    }
}

/// The part of `path` after byte `offset`, lossily decoded; empty on errors.
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn io_at(action: &str, path: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::io(format!("{action} {}", path.display()), source)
}
