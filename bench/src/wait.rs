//! Polling with a deadline.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often completion is polled. Small against the phases measured (seconds).
pub const POLL: Duration = Duration::from_millis(10);

/// A named point in time after which waiting is an error.
#[derive(Debug, Clone)]
pub struct Deadline {
    what: String,
    timeout: Duration,
    until: Instant,
}

impl Deadline {
    /// A deadline `timeout` from now for waiting on `what`.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Self {
            what: what.into(),
            timeout,
            until: Instant::now() + timeout,
        }
    }

    /// Fails once the deadline has passed.
    pub fn check(&self) -> Result<()> {
        if Instant::now() > self.until {
            bail!(
                "timed out after {} s waiting for {}",
                self.timeout.as_secs(),
                self.what
            );
        }
        Ok(())
    }

    /// Checks the deadline, then sleeps one poll interval.
    pub async fn tick(&self) -> Result<()> {
        self.check()?;
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}
