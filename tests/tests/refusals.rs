//! A destination that refuses rows (a CHECK constraint the source does not have) under a
//! stream of changes, with the real binary: by default the connector stops naming the row and
//! acknowledges nothing past it; with `on_apply_error = "dead_letter"` the refused rows are set
//! aside, exactly once even across a kill -9, and every other row is applied.

mod plugin_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use pgmorph_e2e::{spawn_bin, wait_same, wait_until, Pair, DEADLINE};
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);";
/// Batches of the dead-letter workload.
const BATCHES: i32 = 60;
const CHECK: &str = "ALTER TABLE postgres.items ADD CONSTRAINT nonneg CHECK (v >= 0)";

/// Batch `b` of the workload, as source transactions: 40 rows inserted in one transaction
/// (a COPY on the destination) with the multiples of 7 negative (refused); one update of the
/// batch's other rows where the multiples of 11 become -1 (refused) and the rest grow by one;
/// deletes of the multiples of 13; a one-row insert, negative for every third batch.
fn batch_sql(b: i32) -> [String; 4] {
    let (lo, hi) = (b * 40 + 1, b * 40 + 40);
    let single = 100_000 + b;
    let single_v = if b % 3 == 0 { -(b + 2) } else { b };
    [
        format!(
            "INSERT INTO items SELECT g, CASE WHEN g % 7 = 0 THEN -g ELSE g END \
             FROM generate_series({lo}, {hi}) g"
        ),
        format!(
            "UPDATE items SET v = CASE WHEN id % 11 = 0 THEN -1 ELSE v + 1 END \
             WHERE id BETWEEN {lo} AND {hi} AND id % 7 <> 0"
        ),
        format!("DELETE FROM items WHERE id BETWEEN {lo} AND {hi} AND id % 13 = 0 AND id % 7 <> 0"),
        format!("INSERT INTO items VALUES ({single}, {single_v})"),
    ]
}

async fn run_batches(
    src: &Client,
    batches: std::ops::Range<i32>,
    pause: Duration,
) -> anyhow::Result<()> {
    for b in batches {
        for sql in batch_sql(b) {
            src.batch_execute(&sql).await?;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn rows(client: &Client, table: &str) -> anyhow::Result<HashMap<i32, i32>> {
    Ok(client
        .query(&format!("SELECT id, v FROM {table}"), &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Where the destination should be: every source row the CHECK accepts; a row whose update
/// to -1 was refused keeps its inserted value; a row inserted negative is absent.
fn expected(source: &HashMap<i32, i32>) -> HashMap<i32, i32> {
    source
        .iter()
        .filter_map(|(&id, &v)| match v {
            -1 => Some((id, id)),
            v if v < 0 => None,
            v => Some((id, v)),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_stops_the_connector_naming_it_until_the_cause_is_fixed() -> anyhow::Result<()>
{
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = plugin_support::binary_run(&pair, "refusestop", "schema = \"public\"", &[])?;
    let mut child = spawn_bin(&args, &log);
    wait_until(
        &dst,
        "SELECT state = 'polling' FROM pgmorph.state WHERE name = 'refusestop'",
        None,
    )
    .await?;
    dst.batch_execute(CHECK).await?;
    run_batches(&src, 0..5, Duration::from_millis(5)).await?;

    let start = Instant::now();
    while child.is_running() {
        if start.elapsed() > DEADLINE {
            bail!("the connector went on past a refused row");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .find(|l| l.contains("refused the insert"))
        .unwrap_or_else(|| panic!("no refusal in the log: {text}"));
    for part in [
        "destination table postgres.items",
        r#"of {"id":"7"}"#,
        "constraint nonneg",
        "SQLSTATE 23514",
        "nothing from them was acknowledged",
    ] {
        assert!(line.contains(part), "{part} not named: {line}");
    }
    let lsn = line
        .split("from the source transaction at ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("the LSN is named")
        .to_string();
    let ahead: bool = src
        .query_one(
            "SELECT confirmed_flush_lsn > $1::text::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = 'pgmorph_refusestop'",
            &[&lsn],
        )
        .await?
        .get(0);
    assert!(
        !ahead,
        "the slot was acknowledged past the refused transaction at {lsn}"
    );
    let none: i64 = dst
        .query_one(
            "SELECT count(*) FROM postgres.items WHERE id > 6 AND id <= 40",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(none, 0, "nothing of the refused transaction was committed");

    dst.batch_execute("ALTER TABLE postgres.items DROP CONSTRAINT nonneg")
        .await?;
    let mut child = spawn_bin(&args, &log);
    wait_same(&src, &dst, &[("public.items", "postgres.items")], None).await?;
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_go_to_dead_letters_once_across_a_kill_and_the_rest_is_applied(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = plugin_support::binary_run(&pair, "refusedl", "schema = \"public\"", &[])?;
    let mut text = std::fs::read_to_string(&args[2])?;
    text.push_str("on_apply_error = \"dead_letter\"\n");
    std::fs::write(&args[2], text)?;
    let mut child = spawn_bin(&args, &log);
    wait_until(
        &dst,
        "SELECT state = 'polling' FROM pgmorph.state WHERE name = 'refusedl'",
        None,
    )
    .await?;
    dst.batch_execute(CHECK).await?;

    let load_src = pair.source.connect("postgres").await?;
    let load =
        tokio::spawn(
            async move { run_batches(&load_src, 0..BATCHES, Duration::from_millis(20)).await },
        );
    tokio::time::sleep(Duration::from_millis(600)).await;
    child.kill();
    let mut child = spawn_bin(&args, &log);
    load.await??;

    let source = rows(&src, "items").await?;
    let want = expected(&source);
    let start = Instant::now();
    loop {
        if rows(&dst, "postgres.items").await? == want {
            break;
        }
        if start.elapsed() > DEADLINE || !child.is_running() {
            bail!(
                "the destination does not hold the accepted rows: {}",
                std::fs::read_to_string(&log)?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log)?;
    let second_run = text
        .rsplit_once("streaming changes")
        .map_or("", |(_, after)| after);
    assert!(
        second_run.contains("the destination refused a row"),
        "the process started after the kill sets refused rows aside too"
    );
    let refused_inserts = source.values().filter(|&&v| v < -1).count() as i64;
    // Every multiple of 11 but not of 7 had its update refused (some were deleted since).
    let refused_updates = (1..=BATCHES * 40)
        .filter(|id| id % 11 == 0 && id % 7 != 0)
        .count() as i64;
    assert!(
        refused_inserts > 60 && refused_updates > 60,
        "the workload refuses rows"
    );
    let count = |op: &'static str| {
        let dst = &dst;
        async move {
            let n: i64 = dst
                .query_one(
                    "SELECT count(*) FROM pgmorph.dead_letters WHERE connector = 'refusedl' \
                     AND op = $1 AND sqlstate = '23514' AND error LIKE '%nonneg%' \
                     AND plugin IS NULL AND lsn::pg_lsn > '0/0'",
                    &[&op],
                )
                .await?
                .get(0);
            anyhow::Ok(n)
        }
    };
    assert_eq!(count("insert").await?, refused_inserts);
    assert_eq!(count("update").await?, refused_updates);
    let row = dst
        .query_one(
            "SELECT count(*), count(DISTINCT (op, row_key)), \
             bool_and(row_key ? 'id' AND row_data ? 'new'), \
             (SELECT dead_lettered FROM pgmorph.stats WHERE connector = 'refusedl') \
             FROM pgmorph.dead_letters",
            &[],
        )
        .await?;
    let (all, distinct, keyed, counted): (i64, i64, bool, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(all, refused_inserts + refused_updates);
    assert_eq!(distinct, all, "a refused row was set aside twice");
    assert!(keyed, "each dead letter names its key and row");
    assert_eq!(counted, all, "the counter matches the dead letters");
    child.stop_cleanly()?;
    Ok(())
}
