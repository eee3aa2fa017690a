//! `--lag-csv`: every heartbeat's lag, for plotting or for finding when the outliers happened.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{VariantKind, Workload};

/// Creates (or truncates) the file and writes the header.
pub fn create(path: &Path) -> Result<()> {
    std::fs::write(path, "run,variant,load,heartbeat,at_ms,lag_ms\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Appends one live phase's heartbeats: `(since the load started, lag)` each.
pub fn append(
    path: &Path,
    run: usize,
    variant: VariantKind,
    load: Workload,
    beats: &[(Duration, Duration)],
) -> Result<()> {
    let mut text = String::new();
    for (i, (at, lag)) in beats.iter().enumerate() {
        text.push_str(&format!(
            "{run},{},{},{i},{:.3},{:.3}\n",
            variant.label(),
            load.live_label(),
            at.as_secs_f64() * 1000.0,
            lag.as_secs_f64() * 1000.0
        ));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}
