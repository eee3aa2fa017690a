//! `pgmorph wait --lag 0`: blocks until the destination has applied everything the source had
//! written when the command started (for a cut-over), polling the connector's recorded
//! progress, so it works while the connector runs in another process.

use std::time::{Duration, Instant};

use pgmorph::config::Config;
use pgmorph::model::Lsn;
use pgmorph::source::preflight::current_wal_lsn;
use pgmorph::state::{control, owner};

use crate::{destination, source};

/// How often the destination's progress is read.
const POLL: Duration = Duration::from_millis(200);

/// Reads the source's WAL position once, then waits until the connector's applied position is
/// within `lag` bytes of it; fails with [`super::Unmet`] after `timeout`.
pub async fn run(config: &Config, lag: u64, timeout: Option<Duration>) -> anyhow::Result<()> {
    let target = {
        let src = source(config).await?;
        let now = current_wal_lsn(&src).await?;
        Lsn(now.0.saturating_sub(lag))
    };
    let dest = destination(config).await?;
    let started = Instant::now();
    loop {
        let applied = control::offset(&dest, &config.name).await?;
        if applied.is_some_and(|a| a >= target) {
            println!(
                "connector {} applied up to {} (source position {target} reached after {:.1} s)",
                config.name,
                show(applied),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            let running = owner::holder(&dest, &config.name).await?.is_some();
            let why = if running {
                ""
            } else {
                "; no process runs the connector"
            };
            return Err(super::Unmet(format!(
                "timed out after {} s: connector {} applied up to {}, the source was at {target}{why}",
                started.elapsed().as_secs(),
                config.name,
                show(applied),
            ))
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

fn show(lsn: Option<Lsn>) -> String {
    lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
}
