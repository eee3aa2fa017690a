//! `apply.parallel`: changes of tables that may be spread go to several destination
//! connections by key, each committing its part of a group with its own position; tables with
//! other unique constraints stay on one connection; TRUNCATE, source DDL and key changes run
//! on one connection; a kill -9 in the middle loses and repeats nothing.

use std::time::Duration;

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{spawn_bin, wait_same, wait_streaming, wait_until, Pair, Running};
use tokio_postgres::Client;

const SCHEMA: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text);
CREATE TABLE tagged (id int PRIMARY KEY, tag text);
CREATE TABLE events (seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
"#;

/// `tagged` has a unique constraint on the destination only: it stays on lane 0.
const DEST_SCHEMA: &str = r#"
CREATE SCHEMA postgres;
CREATE TABLE postgres.tagged (id int PRIMARY KEY, tag text UNIQUE);
"#;

const TABLES: [(&str, &str); 3] = [
    ("public.accounts", "postgres.accounts"),
    ("public.tagged", "postgres.tagged"),
    ("public.events", "postgres.events"),
];

const PARALLEL: &str = "[apply]\nparallel = 4\n";

/// Destination transactions that wrote the rows `filter` selects.
async fn writers(dst: &Client, table: &str, filter: &str) -> anyhow::Result<i64> {
    Ok(dst
        .query_one(
            &format!("SELECT count(DISTINCT xmin::text) FROM {table} WHERE {filter}"),
            &[],
        )
        .await?
        .get(0))
}

async fn setup(pair: &Pair) -> anyhow::Result<(Client, Client)> {
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    dst.batch_execute(DEST_SCHEMA).await?;
    Ok((src, dst))
}

/// Random changes from several source sessions at once, with key changes.
async fn churn(pair: &Pair, base: i32, sessions: i32, rounds: i32) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let client = pair.source.connect("postgres").await?;
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                let first = base + s * 100_000;
                let id = first + r;
                let sql = format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({id}, {r}, 'new');
                     UPDATE accounts SET balance = balance + 1 WHERE id = {first} + ({r} * 7) % ({r} + 1);
                     DELETE FROM accounts WHERE id = {first} + ({r} * 13) % ({r} + 1) AND {r} % 5 = 0;
                     INSERT INTO events VALUES ({id}, 'e');
                     COMMIT;"
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| anyhow::anyhow!("{sql}: {e:?}"))?;
                if r % 50 == 49 {
                    // A key change in a transaction of its own.
                    client
                        .batch_execute(&format!(
                            "UPDATE accounts SET id = -id WHERE id = {id} - 1"
                        ))
                        .await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_changes_land_exactly_once_and_in_key_order() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = setup(&pair).await?;
    let (_, config) = pair.config("lanes", PARALLEL, "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "lanes", Some(&running)).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 3 FROM pg_stat_activity WHERE application_name LIKE 'pgmorph apply lane %'",
        Some(&running),
    )
    .await?;

    // One source transaction's rows of a spread table are written by every lane; those of a
    // table with another unique constraint by one.
    src.batch_execute(
        "BEGIN;
         INSERT INTO accounts SELECT g, 0, 'one' FROM generate_series(1000001, 1000400) g;
         INSERT INTO tagged SELECT g, 't' || g FROM generate_series(1, 400) g;
         COMMIT;",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_eq!(writers(&dst, "postgres.accounts", "id > 1000000").await?, 4);
    assert_eq!(writers(&dst, "postgres.tagged", "true").await?, 1);

    // Concurrent sessions, updates and deletes of keys other sessions' lanes hold, key
    // changes, a TRUNCATE in the middle and source DDL.
    churn(&pair, 0, 4, 150).await?;
    src.batch_execute("TRUNCATE tagged; INSERT INTO tagged VALUES (1, 'again')")
        .await?;
    src.batch_execute("ALTER TABLE accounts ADD COLUMN flag boolean")
        .await?;
    src.batch_execute("UPDATE accounts SET flag = true WHERE id % 3 = 0")
        .await?;
    churn(&pair, 500_000, 3, 60).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    let inserts: i64 = dst
        .query_one(
            "SELECT inserts FROM pgmorph.stats WHERE connector = 'lanes'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        inserts,
        400 + 400 + 1 + 2 * (4 * 150 + 3 * 60),
        "every lane's inserts counted once"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished());
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_after_spread_changes_of_its_transaction_starts_again_on_one_connection(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = setup(&pair).await?;
    let (path, _) = pair.config("rekey", PARALLEL, "schema = \"public\"")?;
    let path = path.to_string_lossy().to_string();
    let log = pair.dir.path().join("rekey.log");
    let mut run = spawn_bin(&["run", "--config", &path], &log);
    wait_streaming(&dst, "rekey", None).await?;

    // 3,000 rows go out to the lanes before the key change of the same transaction.
    src.batch_execute(
        "BEGIN;
         INSERT INTO accounts SELECT g, 0, 'x' FROM generate_series(1, 3000) g;
         UPDATE accounts SET id = -1 WHERE id = 1;
         INSERT INTO accounts VALUES (1, 1, 'reused key');
         COMMIT;",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, None).await?;
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("starting again on one apply connection"),
        "{text}"
    );
    assert_eq!(
        writers(&dst, "postgres.accounts", "true").await?,
        1,
        "applied on one connection"
    );
    // Then spread again.
    src.batch_execute("INSERT INTO accounts SELECT g, 0, 'y' FROM generate_series(5001, 5400) g")
        .await?;
    wait_same(&src, &dst, &TABLES, None).await?;
    assert_eq!(writers(&dst, "postgres.accounts", "id > 5000").await?, 4);
    run.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_lanes_apply_loses_and_repeats_nothing() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = setup(&pair).await?;
    let (path, _) = pair.config("killed", PARALLEL, "schema = \"public\"")?;
    let path = path.to_string_lossy().to_string();
    let log = pair.dir.path().join("killed.log");
    let mut first = spawn_bin(&["run", "--config", &path], &log);
    wait_streaming(&dst, "killed", None).await?;

    let writer = pair.source.connect("postgres").await?;
    let load = tokio::spawn(async move {
        for i in 0..2000 {
            writer
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO accounts SELECT g, {i}, 'k' FROM generate_series({i} * 10, {i} * 10 + 9) g;
                     INSERT INTO events VALUES ({i}, 'k');
                     COMMIT;"
                ))
                .await?;
        }
        anyhow::Ok(())
    });
    wait_until(&dst, "SELECT count(*) > 3000 FROM postgres.accounts", None).await?;
    first.kill();
    load.await??;

    let mut second = spawn_bin(&["run", "--config", &path], &log);
    wait_same(&src, &dst, &TABLES, None).await?;
    let duplicated: i64 = dst
        .query_one(
            "SELECT count(*) FROM (SELECT seq FROM postgres.events GROUP BY seq HAVING count(*) > 1) d",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(duplicated, 0);
    assert_eq!(
        dst.query_one("SELECT count(*) FROM postgres.accounts", &[])
            .await?
            .get::<_, i64>(0),
        20_000
    );
    second.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_applied_while_it_runs_commits_after_the_spread_ones(
) -> anyhow::Result<()> {
    let source = pgmorph::cluster::ClusterOptions::source()
        .with_setting("logical_decoding_work_mem", "64kB");
    let pair = Pair::start_with_source(source, pgmorph::cluster::ClusterOptions::destination())?;
    let (src, dst) = setup(&pair).await?;
    let (_, config) = pair.config("mixed", PARALLEL, "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "mixed", Some(&running)).await?;

    let big = pair.source.connect("postgres").await?;
    big.batch_execute(
        "BEGIN; INSERT INTO accounts SELECT g, 0, repeat('b', 200) FROM generate_series(1, 20000) g;",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) > 0 FROM pg_stat_activity \
         WHERE application_name = 'pgmorph apply in-progress' AND backend_xid IS NOT NULL",
        Some(&running),
    )
    .await?;
    // Spread transactions commit while it runs, on keys it does not touch.
    src.batch_execute(
        "INSERT INTO accounts SELECT g, 1, 's' FROM generate_series(100001, 100400) g",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 400 FROM postgres.accounts",
        Some(&running),
    )
    .await?;
    assert_eq!(writers(&dst, "postgres.accounts", "true").await?, 4);
    big.batch_execute("COMMIT").await?;
    src.batch_execute("UPDATE accounts SET balance = 2 WHERE id % 100 = 0")
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    running.stop().await?;
    Ok(())
}
