//! The last error of a connector kept on the local machine too: a process that stops because
//! it lost its destination cannot write why into the destination, and `status` must still be
//! able to say it. The file is `$PGMORPH_STATE_DIR/<name>.json` (default
//! `$XDG_STATE_HOME/pgmorph`, else `~/.local/state/pgmorph`); writing it is best effort.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a process recorded locally when it stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRecord {
    /// The connector.
    pub name: String,
    /// The error, on one line (never a password: errors name servers as `user@host:port/db`).
    pub err: String,
    /// What to do about it.
    pub err_kind: String,
    /// The process that stopped.
    pub pid: u32,
    /// When, as Unix seconds.
    pub at: u64,
    /// `stopped`, or `reconnecting` while the process tries again.
    #[serde(default = "stopped")]
    pub state: String,
    /// Failed reconnection attempts in a row, while reconnecting.
    #[serde(default)]
    pub retries: u32,
}

fn stopped() -> String {
    "stopped".into()
}

impl LocalRecord {
    /// Whether the process that wrote the record still runs (on Linux, where that can be
    /// told; elsewhere a reconnecting record is believed).
    pub fn process_alive(&self) -> bool {
        if cfg!(target_os = "linux") {
            std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
        } else {
            self.state == "reconnecting"
        }
    }
}

/// The folder of the local records.
pub fn dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("PGMORPH_STATE_DIR")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("pgmorph")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/pgmorph")))
}

fn file(name: &str) -> Option<PathBuf> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir()?.join(format!("{safe}.json")))
}

/// Records that connector `name` stopped with `err`; a failure to write is logged only.
pub fn record(name: &str, err: &str, err_kind: &str) {
    write(now(name, err, err_kind));
}

/// Records that connector `name` lost a connection with `err` (of kind `err_kind`) and tries
/// again (attempt `attempt` in a row).
pub fn record_retry(name: &str, err: &str, err_kind: &str, attempt: u32) {
    write(LocalRecord {
        state: "reconnecting".into(),
        retries: attempt,
        ..now(name, err, err_kind)
    });
}

fn now(name: &str, err: &str, err_kind: &str) -> LocalRecord {
    LocalRecord {
        name: name.to_string(),
        err: err.to_string(),
        err_kind: err_kind.to_string(),
        pid: std::process::id(),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        state: stopped(),
        retries: 0,
    }
}

fn write(rec: LocalRecord) {
    let Some(path) = file(&rec.name) else { return };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap_or_default()));
    if let Err(e) = written {
        tracing::debug!(path = %path.display(), error = %e, "cannot keep the error locally");
    }
}

/// Forgets connector `name`'s local record (a start that got going).
pub fn clear(name: &str) {
    if let Some(path) = file(name) {
        let _ = std::fs::remove_file(path);
    }
}

/// Connector `name`'s local record, if one was kept.
pub fn read(name: &str) -> Option<LocalRecord> {
    let text = std::fs::read(file(name)?).ok()?;
    serde_json::from_slice(&text).ok()
}
