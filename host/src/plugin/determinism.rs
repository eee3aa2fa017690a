//! What a plugin sees of time and chance. Unless its settings grant `clock = "real"` or
//! `random = "real"`, a plugin's wall clock reads the source commit time of the changes it is
//! transforming, its monotonic clock starts at 0 at every call and advances [`MONOTONIC_STEP`]
//! per read, and its random bytes come from a stream seeded by the plugin, the table and the
//! position of the batch's first row: a replay of the same changes gives the same output.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_core::{Infallible, TryRng};
use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::config::Grant;
use crate::model::{Provenance, Scope};

/// How far the deterministic monotonic clock advances at each read.
pub(crate) const MONOTONIC_STEP: Duration = Duration::from_micros(1);

/// The time and random stream of one plugin instance, set before each call.
#[derive(Clone, Default)]
pub(crate) struct Determinism(Arc<Mutex<Moment>>);

#[derive(Default)]
struct Moment {
    wall_us: i64,
    monotonic_ns: u64,
    stream: Stream,
}

impl Determinism {
    /// Points the clocks and the random stream at a batch of `table`'s changes.
    pub(crate) fn set(&self, plugin: &str, table: &str, at: &Provenance) {
        let mut m = self.lock();
        m.wall_us = at.time_us;
        m.monotonic_ns = 0;
        m.stream = Stream::new(seed(plugin, table, at));
    }

    fn lock(&self) -> MutexGuard<'_, Moment> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs the deterministic clocks and random sources the grants leave in place.
    pub(crate) fn install(&self, builder: &mut WasiCtxBuilder, clock: Grant, random: Grant) {
        if clock == Grant::Deterministic {
            builder.wall_clock(self.clone());
            builder.monotonic_clock(self.clone());
        }
        if random == Grant::Deterministic {
            builder.secure_random(self.clone());
            builder.insecure_random(self.clone());
            builder.insecure_random_seed(0x7067_6d6f_7270_6800);
        }
    }
}

impl HostWallClock for Determinism {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.lock().wall_us).unwrap_or(0))
    }
}

impl HostMonotonicClock for Determinism {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        let mut m = self.lock();
        let now = m.monotonic_ns;
        m.monotonic_ns += MONOTONIC_STEP.as_nanos() as u64;
        now
    }
}

impl TryRng for Determinism {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.lock().stream.fill(dst);
        Ok(())
    }
}

/// The seed of a batch's random stream: plugin, table and the position of its first row.
fn seed(plugin: &str, table: &str, at: &Provenance) -> [u8; 32] {
    let (kind, scope) = match at.scope {
        Scope::Transaction(lsn) => (b't', lsn),
        Scope::Snapshot(read) => (b's', read),
        Scope::Offline => (b'o', 0),
    };
    let mut h = Sha256::new();
    for part in [plugin.as_bytes(), b"\0", table.as_bytes(), b"\0", &[kind]] {
        h.update(part);
    }
    h.update(scope.to_le_bytes());
    h.update(at.row.to_le_bytes());
    h.finalize().into()
}

/// SHA-256 in counter mode over a seed.
#[derive(Default)]
struct Stream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Stream {
    fn new(seed: [u8; 32]) -> Self {
        Self {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn fill(&mut self, dst: &mut [u8]) {
        for byte in dst {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lsn: u64, row: u64) -> Provenance {
        Provenance::transaction(lsn, 1_000_000).at_row(row)
    }

    fn draw(d: &mut Determinism) -> u64 {
        d.try_next_u64().unwrap()
    }

    #[test]
    fn the_same_position_draws_the_same_numbers_and_another_position_others() {
        let mut d = Determinism::default();
        d.set("p", "public.t", &at(10, 0));
        let first = (draw(&mut d), draw(&mut d));
        d.set("p", "public.t", &at(10, 0));
        assert_eq!(first, (draw(&mut d), draw(&mut d)));
        d.set("p", "public.t", &at(10, 1));
        assert_ne!(first.0, draw(&mut d));
        d.set("p", "public.u", &at(10, 0));
        assert_ne!(first.0, draw(&mut d));
    }

    #[test]
    fn clocks_read_the_commit_time_and_tick_from_zero_at_each_batch() {
        let d = Determinism::default();
        d.set("p", "public.t", &at(10, 0));
        let unix_us = 946_684_800_000_000 + 1_000_000;
        assert_eq!(HostWallClock::now(&d), Duration::from_micros(unix_us));
        assert_eq!(HostMonotonicClock::now(&d), 0);
        assert_eq!(HostMonotonicClock::now(&d), 1_000);
        d.set("p", "public.t", &at(11, 0));
        assert_eq!(HostMonotonicClock::now(&d), 0);
    }
}
