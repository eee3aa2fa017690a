//! Reconnecting after a lost connection: which errors another attempt can fix, and the pause
//! before it (exponential backoff, capped, with jitter so that many connectors do not retry in
//! step against a server that just came back).

use std::time::Duration;

use super::connector::RunError;
use crate::config::ReconnectConfig;
use crate::error_kind::ErrorKind;
use crate::state::owner::OwnerError;

/// The attempts of one connector process.
#[derive(Debug)]
pub(super) struct Retries {
    config: ReconnectConfig,
    /// Failed attempts in a row.
    failures: u32,
    /// Whether an attempt of this process ever copied or streamed: a first start that fails
    /// stops (the operator is watching), a running connector that loses a connection retries.
    ever_live: bool,
}

impl Retries {
    pub(super) fn new(config: &ReconnectConfig) -> Self {
        Self {
            config: config.clone(),
            failures: 0,
            ever_live: false,
        }
    }

    /// Notes that an attempt copied or streamed: the next failure starts a new run of
    /// attempts, from the shortest pause.
    pub(super) fn went_live(&mut self) {
        self.ever_live = true;
        self.failures = 0;
    }

    /// Failed attempts in a row so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// After an attempt failed with `e`: the pause before the next one, or `None` to stop.
    pub(super) fn after(&mut self, e: &RunError) -> Option<Duration> {
        if !self.config.enabled || !self.ever_live || !retryable(e) {
            return None;
        }
        if self.config.max_attempts != 0 && self.failures >= self.config.max_attempts {
            return None;
        }
        self.failures += 1;
        Some(jittered(self.ceiling()))
    }

    /// The longest pause before attempt `failures`: the initial delay, doubled per failure
    /// before it, at most the maximum.
    fn ceiling(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(32);
        let initial = self.config.initial_delay();
        initial
            .checked_mul(1 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.config.max_delay())
    }
}

/// A pause between half of `ceiling` and `ceiling`.
fn jittered(ceiling: Duration) -> Duration {
    ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
}

/// Whether another attempt may succeed where `e` failed: a lost connection, a server
/// restarting or refusing connections for now, a slot still held by the session that died.
/// Not: another process owning the connector, a stop while waiting, or anything to fix.
pub(super) fn retryable(e: &RunError) -> bool {
    let owned_elsewhere = matches!(
        e,
        RunError::Owner(OwnerError::Held { .. } | OwnerError::Interrupted(_))
    );
    e.kind() == ErrorKind::RetryLater && !owned_elsewhere
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_attempts: u32) -> ReconnectConfig {
        ReconnectConfig {
            max_attempts,
            initial_delay_ms: 100,
            max_delay_s: 1,
            ..ReconnectConfig::default()
        }
    }

    fn lost() -> RunError {
        RunError::Owner(OwnerError::Lost("c".into()))
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter() {
        let mut r = Retries::new(&config(0));
        r.went_live();
        let ceilings_ms = [100, 200, 400, 800, 1000, 1000];
        for (i, ceiling) in ceilings_ms.into_iter().enumerate() {
            let pause = r.after(&lost()).expect("retried");
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                pause >= ceiling / 2 && pause <= ceiling,
                "attempt {}: {pause:?} outside [{:?}, {ceiling:?}]",
                i + 1,
                ceiling / 2
            );
        }
        assert_eq!(r.failures(), 6);
        r.went_live();
        let pause = r.after(&lost()).unwrap();
        assert!(pause <= Duration::from_millis(100), "{pause:?}");
    }

    #[test]
    fn stops_after_max_attempts_and_before_going_live() {
        let mut r = Retries::new(&config(2));
        assert_eq!(r.after(&lost()), None, "a first start that fails stops");
        r.went_live();
        assert!(r.after(&lost()).is_some());
        assert!(r.after(&lost()).is_some());
        assert_eq!(r.after(&lost()), None, "the third attempt is not made");
    }

    #[test]
    fn only_passing_conditions_are_retried() {
        let mut r = Retries::new(&config(0));
        r.went_live();
        let held = RunError::Owner(OwnerError::Held {
            name: "c".into(),
            holder: "another".into(),
        });
        assert_eq!(r.after(&held), None, "another process owns the connector");
        let fix = RunError::Unsupported("no".into());
        assert_eq!(r.after(&fix), None);
        let slot_lost = RunError::SlotLost("pgmorph_c".into());
        assert_eq!(r.after(&slot_lost), None);
        let disabled = ReconnectConfig {
            enabled: false,
            ..config(0)
        };
        let mut r = Retries::new(&disabled);
        r.went_live();
        assert_eq!(r.after(&lost()), None);
    }
}
