//! What `/health` answers: the connector's phase, kept by the places that change it.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a running connector is; only [`Phase::Streaming`] is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connecting, checking the servers, mapping tables.
    Starting = 0,
    /// Copying tables.
    Snapshotting = 1,
    /// Streaming changes (CDC).
    Streaming = 2,
    /// Waiting to connect again after a lost connection.
    Reconnecting = 3,
    /// Paused by `pgmorph pause`.
    Paused = 4,
    /// Stopping, stopped or failed.
    Stopping = 5,
}

impl Phase {
    /// The word `/health` answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Snapshotting => "snapshotting",
            Phase::Streaming => "streaming",
            Phase::Reconnecting => "reconnecting",
            Phase::Paused => "paused",
            Phase::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Snapshotting,
            2 => Phase::Streaming,
            3 => Phase::Reconnecting,
            4 => Phase::Paused,
            5 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }

    /// The phase a connector state (as in `pgmorph.state.state`) means, if it means one.
    pub fn of_state(state: &str) -> Option<Self> {
        Some(match state {
            "initializing" => Phase::Starting,
            "copying" => Phase::Snapshotting,
            "polling" => Phase::Streaming,
            "paused" => Phase::Paused,
            "stopped" | "error" | "done" => Phase::Stopping,
            _ => return None,
        })
    }
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Starting as u8);

/// Records the connector's phase. Once stopping, it stays so.
pub fn set(phase: Phase) {
    let _ = PHASE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
        (now != Phase::Stopping as u8).then_some(phase as u8)
    });
    super::streaming(current() == Phase::Streaming);
}

/// The connector's phase now.
pub fn current() -> Phase {
    Phase::from_u8(PHASE.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_row_value_names_its_phase() {
        assert_eq!(Phase::of_state("polling"), Some(Phase::Streaming));
        assert_eq!(Phase::of_state("copying"), Some(Phase::Snapshotting));
        assert_eq!(Phase::of_state("paused"), Some(Phase::Paused));
        assert_eq!(Phase::of_state("initializing"), Some(Phase::Starting));
        assert_eq!(Phase::of_state("error"), Some(Phase::Stopping));
        assert_eq!(Phase::of_state("reconnecting"), None);
        for p in 0..6 {
            assert_eq!(Phase::from_u8(p) as u8, p);
        }
    }
}
