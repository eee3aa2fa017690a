//! The paced load generator of a live phase: row changes at a steady rate, in small source
//! transactions, whatever is due sent every few milliseconds in one round trip.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

use crate::cli::Workload;
use crate::workload::{insert_mixed_sql, update_mixed_sql, Sizes};

/// How often the generator sends the transactions that are due.
const TICK: Duration = Duration::from_millis(5);

/// When the source falls behind, at most this much of the rate is owed: older arrears are
/// dropped rather than sent later in a burst, so the achieved rate drops instead.
const MAX_BURST: Duration = Duration::from_millis(100);

/// Row changes a TPC-B transaction makes: three updates and one insert.
const TPCB_CHANGES: u64 = 4;

/// The source transactions of one live load.
#[derive(Debug)]
pub struct Transactions {
    kind: Kind,
    /// Row changes per transaction.
    changes: u64,
}

#[derive(Debug)]
enum Kind {
    /// New `public.mixed` rows from `next_id` on.
    Inserts { next_id: u64 },
    /// Single-row updates of odd `public.mixed` ids (the delete load only removes even ids).
    Updates { odd_ids: u64, next: u64 },
    /// pgbench's built-in TPC-B script with random keys.
    Pgbench { scale: u64, rng: Rng },
}

impl Transactions {
    /// The transactions of `workload`, with `tx_changes` row changes each (TPC-B: always 4).
    pub fn new(workload: Workload, sizes: &Sizes, tx_changes: u64, next_id: u64) -> Result<Self> {
        let (kind, changes) = match workload {
            Workload::Inserts => (Kind::Inserts { next_id }, tx_changes),
            Workload::Updates => (
                Kind::Updates {
                    odd_ids: sizes.rows.div_ceil(2),
                    next: 0,
                },
                tx_changes,
            ),
            Workload::Pgbench => (
                Kind::Pgbench {
                    scale: u64::from(sizes.pgbench_scale),
                    rng: Rng(0x9E37_79B9_7F4A_7C15),
                },
                TPCB_CHANGES,
            ),
            other => bail!("{} has no live load", other.label()),
        };
        Ok(Self {
            kind,
            changes: changes.max(1),
        })
    }

    /// The next unused `public.mixed` id after the transactions generated so far.
    pub fn next_id(&self, before: u64) -> u64 {
        match self.kind {
            Kind::Inserts { next_id } => next_id,
            _ => before,
        }
    }

    /// Appends one transaction, `BEGIN` to `COMMIT`, to `sql`.
    fn push(&mut self, sql: &mut String) {
        sql.push_str("BEGIN;");
        match &mut self.kind {
            Kind::Inserts { next_id } => {
                sql.push_str(&insert_mixed_sql(*next_id, *next_id + self.changes - 1));
                sql.push(';');
                *next_id += self.changes;
            }
            Kind::Updates { odd_ids, next } => {
                for _ in 0..self.changes {
                    let id = 1 + 2 * ((*next * 7919) % *odd_ids);
                    sql.push_str(&update_mixed_sql(id));
                    *next += 1;
                }
            }
            Kind::Pgbench { scale, rng } => {
                let aid = 1 + rng.below(100_000 * *scale);
                let tid = 1 + rng.below(10 * *scale);
                let bid = 1 + rng.below(*scale);
                let delta = rng.below(10_001) as i64 - 5_000;
                // The statements of pgbench's built-in "TPC-B (sort of)" script.
                let _ = write!(
                    sql,
                    "UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid};\
                     SELECT abalance FROM pgbench_accounts WHERE aid = {aid};\
                     UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};\
                     UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid};\
                     INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                     VALUES ({tid}, {bid}, {aid}, {delta}, CURRENT_TIMESTAMP);"
                );
            }
        }
        sql.push_str("COMMIT;");
    }
}

/// xorshift64*: reproducible keys without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    /// A number in `0..n` (`n` > 0; the tiny modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What the generator did.
#[derive(Debug)]
pub struct Generated {
    /// Row changes committed on the source.
    pub changes: u64,
    /// Seconds from the start to the last commit.
    pub secs: f64,
    /// The transactions, for the ids they used.
    pub transactions: Transactions,
}

/// The schedule: how many whole transactions are due at a point in time.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    per_tx: u64,
    /// Most changes owed at once (see [`MAX_BURST`]).
    max_owed: u64,
    /// Changes sent, plus changes dropped as arrears.
    accounted: u64,
}

impl Pacer {
    fn new(rate: u64, per_tx: u64) -> Self {
        let max_owed = rate * MAX_BURST.as_millis() as u64 / 1_000 / per_tx * per_tx;
        Self {
            rate,
            per_tx,
            max_owed: max_owed.max(per_tx),
            accounted: 0,
        }
    }

    /// Transactions to send `elapsed` after the start; counts them as sent.
    fn due(&mut self, elapsed: Duration) -> u64 {
        let due = (u128::from(self.rate) * elapsed.as_nanos() / 1_000_000_000) as u64;
        let owed = due.saturating_sub(self.accounted);
        self.accounted += owed.saturating_sub(self.max_owed);
        let batch = owed.min(self.max_owed) / self.per_tx;
        self.accounted += batch * self.per_tx;
        batch
    }
}

/// Commits `rate` row changes a second from `start` until `until`: every tick, the whole
/// transactions that are due (at most [`MAX_BURST`] of them) in one round trip.
pub async fn generate(
    client: Client,
    mut transactions: Transactions,
    rate: u64,
    start: Instant,
    until: Instant,
) -> Result<Generated> {
    let mut pacer = Pacer::new(rate, transactions.changes);
    let mut ticks = tokio::time::interval_at(start.into(), TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sent = 0;
    let mut sql = String::new();
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= until {
            break;
        }
        let batch = pacer.due(now - start);
        if batch == 0 {
            continue;
        }
        sql.clear();
        for _ in 0..batch {
            transactions.push(&mut sql);
        }
        client.batch_execute(&sql).await.context("live load")?;
        sent += batch * transactions.changes;
    }
    Ok(Generated {
        changes: sent,
        secs: start.elapsed().as_secs_f64(),
        transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Sizes {
        Sizes {
            rows: 11,
            wide_rows: 1,
            wide_cols: 2,
            pgbench_scale: 1,
            inserts: 0,
            insert_batch: 1,
            updates: 0,
            deletes: 0,
            tx_batch: 1,
            pgbench_clients: 1,
            pgbench_tx_per_client: 0,
            bigtx_rows: 1,
        }
    }

    #[test]
    fn pacing_is_steady_and_drops_old_arrears() {
        let mut pacer = Pacer::new(5_000, 10);
        let ms = Duration::from_millis;
        // 5 ms at 5,000/s = 25 changes: two whole transactions, the rest carried over.
        assert_eq!(pacer.due(ms(5)), 2);
        assert_eq!(pacer.due(ms(10)), 3);
        let sent: u64 = (3..=200).map(|i| pacer.due(ms(5 * i))).sum();
        assert_eq!(5 + sent, 1_000 / 10 * 5);
        // One second stalled: only 100 ms (500 changes) is sent, the rest dropped.
        assert_eq!(pacer.due(ms(2_000)), 50);
        assert_eq!(pacer.due(ms(2_010)), 5);
    }

    #[test]
    fn inserts_advance_the_ids() {
        let mut txs = Transactions::new(Workload::Inserts, &sizes(), 10, 100).unwrap();
        let mut sql = String::new();
        txs.push(&mut sql);
        txs.push(&mut sql);
        assert!(
            sql.contains("generate_series(100::int8, 109::int8)"),
            "{sql}"
        );
        assert!(
            sql.contains("generate_series(110::int8, 119::int8)"),
            "{sql}"
        );
        assert_eq!(txs.next_id(100), 120);
        assert_eq!(sql.matches("COMMIT;").count(), 2);
    }

    #[test]
    fn updates_touch_odd_existing_ids_only() {
        let mut txs = Transactions::new(Workload::Updates, &sizes(), 50, 100).unwrap();
        let mut sql = String::new();
        txs.push(&mut sql);
        let ids: Vec<u64> = sql
            .split("WHERE id = ")
            .skip(1)
            .map(|s| s.split(';').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.iter().all(|id| id % 2 == 1 && *id <= 11), "{ids:?}");
        assert_eq!(txs.next_id(100), 100);
    }

    #[test]
    fn tpcb_has_four_changes_in_range() {
        let mut txs = Transactions::new(Workload::Pgbench, &sizes(), 10, 1).unwrap();
        assert_eq!(txs.changes, 4);
        let mut sql = String::new();
        for _ in 0..100 {
            txs.push(&mut sql);
        }
        assert_eq!(sql.matches("INSERT INTO pgbench_history").count(), 100);
        assert!(sql.contains("WHERE bid = 1;"));
        assert!(!sql.contains("WHERE bid = 2;"));
    }
}
