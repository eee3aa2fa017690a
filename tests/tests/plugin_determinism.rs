//! Plugins see no real clock or randomness unless granted: the `moment` plugin writes what its
//! wall clock and random source read into each row, and two connectors replaying the same
//! snapshot and the same source transaction write the same values; with `clock = "real"` and
//! `random = "real"` they differ.

mod plugin_support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pgmorph::config::Config;
use pgmorph::pipeline::Mode;
use pgmorph_e2e::{wait_streaming, wait_until, Pair, Running};
use plugin_support::chain;
use tokio_postgres::Client;

/// A connector into destination schema `schema` through `moment` with `settings`.
fn start(pair: &Pair, name: &str, schema: &str, settings: &str) -> anyhow::Result<Running> {
    let text =
        pair.config_text(name, "", "schema = \"public\"") + &format!("schema = \"{schema}\"\n");
    let config = Config::parse(&text, Path::new("determinism.toml"))?;
    let chain = chain(&[("moment", "moment", settings)])?;
    Ok(Running::start_with(&config, Mode::Initial, Box::new(chain)))
}

/// `(id, seen_at, dice)` of every row of `schema.t`, by id.
async fn seen(dst: &Client, schema: &str) -> anyhow::Result<Vec<(i32, i64, String)>> {
    let rows = dst
        .query(
            &format!("SELECT id, seen_at, dice FROM {schema}.t ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_read_the_commit_time_and_the_same_random_numbers_unless_granted_real_ones(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO t (id) SELECT generate_series(1, 3);",
    )
    .await?;
    let before = now_us();
    let real = "clock = \"real\"\nrandom = \"real\"";
    let runs = [
        start(&pair, "da", "a", "")?,
        start(&pair, "db", "b", "")?,
        start(&pair, "dc", "c", real)?,
    ];
    for (name, run) in ["da", "db", "dc"].iter().zip(&runs) {
        wait_streaming(&dst, name, Some(run)).await?;
    }
    src.batch_execute("INSERT INTO t (id) SELECT generate_series(4, 6)")
        .await?;
    for (schema, run) in ["a", "b", "c"].iter().zip(&runs) {
        wait_until(
            &dst,
            &format!("SELECT count(*) = 6 FROM {schema}.t"),
            Some(run),
        )
        .await?;
    }
    let after = now_us();
    let (a, b, c) = (
        seen(&dst, "a").await?,
        seen(&dst, "b").await?,
        seen(&dst, "c").await?,
    );
    let commit: i64 = src
        .query_one(
            "SELECT (extract(epoch FROM at) * 1e6)::bigint FROM t WHERE id = 4",
            &[],
        )
        .await?
        .get(0);

    // Snapshot rows: the same random numbers in both replays, the snapshot's time as the clock.
    for (x, y) in a[..3].iter().zip(&b[..3]) {
        assert_eq!(x.2, y.2, "snapshot row {}: a random number per replay", x.0);
        assert!(
            (before..=after).contains(&x.1),
            "snapshot row {}: {}",
            x.0,
            x.1
        );
    }
    // Streamed rows: identical in both replays; the clock reads the commit time, which is at
    // or after the transaction's start (`at`) and before the rows arrived.
    assert_eq!(
        a[3..],
        b[3..],
        "a replayed transaction sees the same clock and random numbers"
    );
    for x in &a[3..] {
        assert!(
            (commit..commit + 10_000_000).contains(&x.1),
            "row {}: {} vs {commit}",
            x.0,
            x.1
        );
        assert_eq!(x.1, a[3].1, "one transaction, one commit time");
    }
    let dice: std::collections::HashSet<&str> = a.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(dice.len(), 6, "each row draws its own numbers: {a:?}");

    // Granted the real clock and randomness: other numbers, the time the plugin ran.
    for (x, y) in a.iter().zip(&c) {
        assert_ne!(x.2, y.2, "row {}: real randomness", x.0);
        assert!(
            (before..=now_us()).contains(&y.1),
            "row {}: real clock {}",
            y.0,
            y.1
        );
    }
    for (x, y) in a[3..].iter().zip(&c[3..]) {
        assert!(
            y.1 > x.1,
            "row {}: the real clock runs after the commit",
            x.0
        );
    }
    for run in runs {
        run.stop().await?;
    }
    Ok(())
}
