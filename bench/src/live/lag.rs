//! Lag of a live phase: heartbeats committed on the source, a poller that notes when each one
//! becomes visible on the destination, and percentiles of the difference. Both instants come
//! from this process's monotonic clock.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

/// How often the poller reads the destination's marker. A heartbeat's lag is overstated by at
/// most this much plus one query round trip.
pub const POLL: Duration = Duration::from_millis(2);

/// Commits `UPDATE bench_marker SET seq = first`, `first + 1`, ... every `every`, each in a
/// transaction of its own, until `until` (at least once). Returns when each commit returned.
pub async fn heartbeat(
    client: Client,
    first: i64,
    every: Duration,
    start: Instant,
    until: Instant,
) -> Result<Vec<Instant>> {
    let update = client
        .prepare("UPDATE bench_marker SET seq = $1 WHERE id = 1")
        .await?;
    let mut ticks = tokio::time::interval_at(start.into(), every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut committed = Vec::new();
    let mut seq = first;
    loop {
        ticks.tick().await;
        client
            .execute(&update, &[&seq])
            .await
            .context("heartbeat")?;
        committed.push(Instant::now());
        seq += 1;
        if Instant::now() >= until {
            return Ok(committed);
        }
    }
}

/// Reads the destination's marker every [`POLL`] and returns when each value from `first` on
/// was first seen (a value seen means every smaller one is applied too: both replicators
/// apply in source commit order). Returns once the value sent on `last` has been seen.
pub async fn poll(
    client: Client,
    first: i64,
    mut last: watch::Receiver<Option<i64>>,
) -> Result<Vec<Instant>> {
    let read = client
        .prepare("SELECT seq FROM bench_marker WHERE id = 1")
        .await?;
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen: Vec<Instant> = Vec::new();
    loop {
        ticks.tick().await;
        let seq: i64 = client
            .query_one(&read, &[])
            .await
            .context("reading the destination's marker")?
            .get(0);
        let now = Instant::now();
        while first + (seen.len() as i64) <= seq {
            seen.push(now);
        }
        if last.borrow_and_update().is_some_and(|last| seq >= last) {
            return Ok(seen);
        }
    }
}

/// Lag percentiles of one live phase.
#[derive(Debug, Clone, Copy)]
pub struct Lag {
    /// Heartbeats measured.
    pub beats: usize,
    /// Median lag.
    pub p50: Duration,
    /// 99th percentile lag.
    pub p99: Duration,
    /// Largest lag.
    pub max: Duration,
}

impl Lag {
    /// Lag of every heartbeat: when it was seen on the destination minus when its commit
    /// returned on the source (`seen[i]` belongs to `committed[i]`).
    pub fn from_instants(committed: &[Instant], seen: &[Instant]) -> Lag {
        let mut lags: Vec<Duration> = committed
            .iter()
            .zip(seen)
            .map(|(c, s)| s.saturating_duration_since(*c))
            .collect();
        lags.sort();
        Lag {
            beats: lags.len(),
            p50: percentile(&lags, 50.0),
            p99: percentile(&lags, 99.0),
            max: lags.last().copied().unwrap_or_default(),
        }
    }
}

/// Nearest-rank percentile of sorted values (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let ms: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(100));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(198));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn lag_pairs_commits_with_sightings() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let committed = [ms(0), ms(20), ms(40)];
        // The first two became visible together; a sighting before the recorded commit
        // (the commit's reply was still in flight) counts as no lag.
        let seen = [ms(25), ms(25), ms(39)];
        let lag = Lag::from_instants(&committed, &seen);
        assert_eq!(lag.beats, 3);
        assert_eq!(lag.p50, Duration::from_millis(5));
        assert_eq!(lag.max, Duration::from_millis(25));
    }
}
