//! Large source transactions applied while they run (`stream_large_transactions`): the source
//! sends them in blocks before their commit (its `logical_decoding_work_mem` is set to the
//! minimum here, so a few thousand rows are enough), pgmorph applies them on a destination
//! connection of their own, and they become visible at once, whole, when they commit; aborted
//! ones and aborted subtransactions leave nothing; a kill in the middle loses and repeats
//! nothing.

use std::time::{Duration, Instant};

use pgmorph::cluster::ClusterOptions;
use pgmorph::pipeline::Mode;
use pgmorph_e2e::{spawn_bin, wait_same, wait_streaming, wait_until, Pair, Running};
use tokio_postgres::Client;

const SCHEMA: &str = r#"
CREATE TABLE big (id int PRIMARY KEY, payload text);
CREATE TABLE small (id int PRIMARY KEY, n int);
CREATE TABLE events (seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
"#;

const TABLES: [(&str, &str); 3] = [
    ("public.big", "postgres.big"),
    ("public.small", "postgres.small"),
    ("public.events", "postgres.events"),
];

/// Destination backends applying an in-progress transaction that has written something.
const SIDE_WROTE: &str = "SELECT count(*) > 0 FROM pg_stat_activity \
     WHERE application_name = 'pgmorph apply in-progress' AND backend_xid IS NOT NULL";
const NO_SIDE: &str = "SELECT count(*) = 0 FROM pg_stat_activity \
     WHERE application_name = 'pgmorph apply in-progress'";

fn streaming_pair() -> anyhow::Result<Pair> {
    let source = ClusterOptions::source().with_setting("logical_decoding_work_mem", "64kB");
    Pair::start_with_source(source, ClusterOptions::destination())
}

async fn count(client: &Client, table: &str) -> anyhow::Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_is_applied_while_it_runs_and_appears_whole_at_its_commit(
) -> anyhow::Result<()> {
    let pair = streaming_pair()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config("streamed", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "streamed", Some(&running)).await?;

    // One transaction of 20,000 rows, with a subtransaction rolled back, one released, and
    // updates and deletes of its own rows.
    let big = pair.source.connect("postgres").await?;
    big.batch_execute(
        "BEGIN;
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
         SAVEPOINT s1;
         INSERT INTO big SELECT g, 'rolled back' FROM generate_series(20001, 25000) g;
         ROLLBACK TO SAVEPOINT s1;
         SAVEPOINT s2;
         INSERT INTO big SELECT g, 'released' FROM generate_series(30001, 31000) g;
         RELEASE SAVEPOINT s2;
         UPDATE big SET payload = 'updated' WHERE id <= 100;
         DELETE FROM big WHERE id BETWEEN 101 AND 200;
         INSERT INTO events SELECT g, 'in the big one' FROM generate_series(1, 3000) g;",
    )
    .await?;
    // Applied on the destination before its commit, and invisible there.
    wait_until(&dst, SIDE_WROTE, Some(&running)).await?;
    assert_eq!(count(&dst, "postgres.big").await?, 0);
    // Transactions that commit meanwhile are applied meanwhile.
    for i in 0..20 {
        src.execute("INSERT INTO small VALUES ($1, $1)", &[&i])
            .await?;
    }
    wait_until(
        &dst,
        "SELECT count(*) = 20 FROM postgres.small",
        Some(&running),
    )
    .await?;
    assert_eq!(count(&dst, "postgres.big").await?, 0);

    let committed = Instant::now();
    big.batch_execute("COMMIT").await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    println!(
        "20,000-row transaction visible on the destination {} ms after its commit",
        committed.elapsed().as_millis()
    );
    assert_eq!(count(&dst, "postgres.big").await?, 20_900);
    wait_until(&dst, NO_SIDE, Some(&running)).await?;

    // One rolled back on the source leaves nothing.
    big.batch_execute(
        "BEGIN; INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(100001, 120000) g;",
    )
    .await?;
    wait_until(&dst, SIDE_WROTE, Some(&running)).await?;
    big.batch_execute("ROLLBACK").await?;
    wait_until(&dst, NO_SIDE, Some(&running)).await?;
    src.execute("INSERT INTO small VALUES (100, 100)", &[])
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    let (transactions, inserts): (i64, i64) = dst
        .query_one(
            "SELECT transactions, inserts FROM pgmorph.stats WHERE connector = 'streamed'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))?;
    assert_eq!(
        inserts,
        20_000 + 1_000 + 3_000 + 21,
        "counted once, rollbacks not"
    );
    assert!(transactions >= 22, "{transactions}");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_large_transaction_loses_and_repeats_nothing(
) -> anyhow::Result<()> {
    let pair = streaming_pair()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (path, _) = pair.config("killed", "", "schema = \"public\"")?;
    let path = path.to_string_lossy().to_string();
    let log = pair.dir.path().join("killed.log");
    let mut first = spawn_bin(&["run", "--config", &path], &log);
    wait_streaming(&dst, "killed", None).await?;

    let big = pair.source.connect("postgres").await?;
    big.batch_execute(
        "BEGIN; INSERT INTO events SELECT g, repeat('e', 100) FROM generate_series(1, 30000) g;",
    )
    .await?;
    wait_until(&dst, SIDE_WROTE, None).await?;
    first.kill();
    // The destination rolls back the killed connection's transaction.
    wait_until(&dst, NO_SIDE, None).await?;
    big.batch_execute(
        "INSERT INTO events SELECT g, 'after the kill' FROM generate_series(30001, 40000) g; COMMIT;",
    )
    .await?;
    src.execute("INSERT INTO small VALUES (1, 1)", &[]).await?;

    let mut second = spawn_bin(&["run", "--config", &path], &log);
    wait_same(&src, &dst, &TABLES, None).await?;
    assert_eq!(count(&dst, "postgres.events").await?, 40_000);
    let duplicated: i64 = dst
        .query_one(
            "SELECT count(*) FROM (SELECT seq FROM postgres.events GROUP BY seq HAVING count(*) > 1) d",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(duplicated, 0);
    second.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_applied_while_it_runs_is_applied_after_its_commit() -> anyhow::Result<()> {
    let pair = streaming_pair()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.execute("INSERT INTO small VALUES (1, 1), (2, 2)", &[])
        .await?;
    let (_, config) = pair.config("fallback", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "fallback", Some(&running)).await?;

    // A TRUNCATE inside a large transaction: applied whole once it commits.
    let big = pair.source.connect("postgres").await?;
    big.batch_execute(
        "BEGIN; INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 10000) g;",
    )
    .await?;
    wait_until(&dst, SIDE_WROTE, Some(&running)).await?;
    big.batch_execute(
        "TRUNCATE small; INSERT INTO big SELECT g, 'z' FROM generate_series(10001, 20000) g;",
    )
    .await?;
    let committed = Instant::now();
    big.batch_execute("COMMIT").await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_eq!(count(&dst, "postgres.small").await?, 0);
    assert_eq!(count(&dst, "postgres.big").await?, 20_000);
    println!(
        "applied whole {} ms after its commit",
        committed.elapsed().as_millis()
    );
    // Later large transactions keep arriving (whole, from now on).
    big.batch_execute(
        "INSERT INTO big SELECT g, repeat('w', 200) FROM generate_series(20001, 40000) g",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!running.is_finished());
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_only_the_destination_takes_never_stalls_the_transactions_that_commit_first(
) -> anyhow::Result<()> {
    let pair = streaming_pair()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute("CREATE TABLE tagged (id int PRIMARY KEY, tag text)")
        .await?;
    // The destination has a unique constraint the source lacks.
    dst.batch_execute(
        "CREATE SCHEMA postgres; CREATE TABLE postgres.tagged (id int PRIMARY KEY, tag text UNIQUE)",
    )
    .await?;
    let text = pair.config_text("locked", "", "schema = \"public\"")
        + "on_apply_error = \"dead_letter\"\n";
    let path = pair.dir.path().join("locked.toml");
    std::fs::write(&path, &text)?;
    let config = pgmorph::config::Config::parse(&text, &path)?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "locked", Some(&running)).await?;

    // The large transaction takes tag 'X' on the destination before it commits...
    let big = pair.source.connect("postgres").await?;
    big.batch_execute(
        "BEGIN;
         INSERT INTO tagged SELECT g, 't' || g FROM generate_series(1, 10000) g;
         INSERT INTO tagged VALUES (100000, 'X');
         INSERT INTO tagged SELECT g, 't' || g FROM generate_series(10001, 20000) g;",
    )
    .await?;
    wait_until(&dst, SIDE_WROTE, Some(&running)).await?;
    // ... and a transaction that commits first wants it too: it must not wait for the
    // large one, which cannot commit before it.
    let started = Instant::now();
    src.execute("INSERT INTO tagged VALUES (200000, 'X')", &[])
        .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 1 FROM postgres.tagged WHERE id = 200000",
        Some(&running),
    )
    .await?;
    let waited = started.elapsed();
    println!("the earlier transaction waited {} ms", waited.as_millis());
    assert!(waited < Duration::from_secs(20), "{waited:?}");

    // The large transaction, applied whole after its commit, meets the constraint.
    big.batch_execute("COMMIT").await?;
    wait_until(
        &dst,
        "SELECT count(*) = 20001 FROM postgres.tagged",
        Some(&running),
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 1 FROM pgmorph.dead_letters WHERE connector = 'locked'",
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}
