//! `[reconnect]`: what a running connector does when it loses a connection.

use std::time::Duration;

use serde::Deserialize;

/// `[reconnect]`: a connector that loses its source or destination connection while running
/// (a server restart, a failover, a terminated backend, a network cut) connects again after a
/// pause that doubles on each failed attempt up to `max_delay_s`, with jitter, and resumes
/// where the destination's progress says. Errors that a retry cannot fix (authentication,
/// privileges, a lost slot, a plugin) stop it at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// `enabled = true`: reconnect at all (false: stop at the first lost connection).
    pub enabled: bool,
    /// `max_attempts = 0`: consecutive failed attempts before the connector stops; 0 never
    /// stops.
    pub max_attempts: u32,
    /// `initial_delay_ms = 500`: the pause before the first attempt.
    pub initial_delay_ms: u64,
    /// `max_delay_s = 30`: the longest pause between attempts.
    pub max_delay_s: u64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 0,
            initial_delay_ms: 500,
            max_delay_s: 30,
        }
    }
}

impl ReconnectConfig {
    /// The pause before the first attempt.
    pub fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.initial_delay_ms)
    }

    /// The longest pause.
    pub fn max_delay(&self) -> Duration {
        Duration::from_secs(self.max_delay_s)
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.initial_delay_ms == 0 {
            return Err("reconnect.initial_delay_ms must be at least 1".into());
        }
        if self.max_delay() < self.initial_delay() {
            return Err(format!(
                "reconnect.max_delay_s ({} s) must not be shorter than reconnect.initial_delay_ms ({} ms)",
                self.max_delay_s, self.initial_delay_ms
            ));
        }
        Ok(())
    }
}
