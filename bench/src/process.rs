//! The pgmorph binary as a child process: start, watch, read its resource use, stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::report::ProcUsage;

/// How long a SIGTERM'd pgmorph may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `pgmorph run`. Killed (SIGKILL) if dropped while running.
pub struct PgmorphProcess {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl PgmorphProcess {
    /// Starts `BIN run --config CONFIG [--plugins DIR]`, logging to `log` (appended).
    pub fn spawn(bin: &Path, config: &Path, plugins: Option<&Path>, log: &Path) -> Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("--config").arg(config);
        if let Some(dir) = plugins {
            cmd.arg("--plugins").arg(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("pgmorph exited at once")?;
        Ok(Self {
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    /// Fails (with the end of the log) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "pgmorph exited unexpectedly ({status}); log tail:\n{}",
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Peak RSS and CPU time so far.
    pub fn usage(&self) -> Option<ProcUsage> {
        read_usage(self.pid)
    }

    /// Sends SIGTERM and waits for a clean exit; returns the usage read just before.
    pub async fn stop(mut self) -> Result<Option<ProcUsage>> {
        let usage = self.usage();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        let exit = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .context("pgmorph did not stop within 60 s of SIGTERM")??;
        if !exit.success() {
            bail!(
                "pgmorph stopped with {exit}; log tail:\n{}",
                log_tail(&self.log)
            );
        }
        Ok(usage)
    }
}

/// `VmHWM` and utime + stime of a live process.
fn read_usage(pid: u32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(ProcUsage {
        peak_rss_kib,
        cpu_secs: cpu_secs(pid)?,
    })
}

/// utime + stime of a live process (any user's: a server's backend too), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and
    // stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// `getconf CLK_TCK`, 100 if unavailable.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
