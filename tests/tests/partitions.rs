//! Partitioned source tables through the real binary: one destination table per partitioned
//! table (the default), copied leaf by leaf in page ranges, with rows moving between partitions,
//! a partition created and one attached while streaming; and leaf by leaf when configured.

mod plugin_support;

use pgmorph_e2e::{
    digest, run_bin, server_major, spawn_bin, wait_same, wait_streaming, wait_until, Pair,
};

/// Three leaves under `measurements`, one of them partitioned again, plus rows in each.
const SCHEMA: &str = r#"
CREATE TABLE measurements (id int NOT NULL, region text NOT NULL, v int, note text,
                           PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE m_eu PARTITION OF measurements FOR VALUES IN ('eu');
CREATE TABLE m_us PARTITION OF measurements FOR VALUES IN ('us') PARTITION BY RANGE (id);
CREATE TABLE m_us_low PARTITION OF m_us FOR VALUES FROM (MINVALUE) TO (5000);
CREATE TABLE m_us_high PARTITION OF m_us FOR VALUES FROM (5000) TO (MAXVALUE);
CREATE TABLE m_asia PARTITION OF measurements FOR VALUES IN ('asia');
CREATE INDEX measurements_v ON measurements (v);
INSERT INTO measurements
  SELECT g, (ARRAY['eu', 'us', 'asia'])[g % 3 + 1], g % 97, repeat('x', 100)
  FROM generate_series(1, 12000) g;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 100) g;
"#;

/// Every kind of move: across list partitions, across the sub-partitions of one, deletes.
const MOVES: &str = r#"
UPDATE measurements SET region = 'asia' WHERE region = 'eu' AND id <= 3000;
UPDATE measurements SET id = id + 10000 WHERE region = 'us' AND id < 300;
DELETE FROM measurements WHERE id % 50 = 0;
UPDATE plain SET v = 'changed' WHERE id <= 10;
"#;

/// Splits every leaf into two page ranges copied by two workers.
const SPLIT: &str = "\n[snapshot]\nparallel = 2\nrange_min_mb = 0\n";

fn cli(args: &[&str]) -> String {
    let (ok, out, err) = run_bin(args);
    assert!(ok, "pgmorph {args:?} failed: {err}");
    out
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_replicates_as_one_table_under_the_plugins_name_for_it(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "parts",
        &format!("schema = \"public\"{SPLIT}"),
        &[(
            "20-rename",
            "rename",
            "config = { tables = { \"public.measurements\" = \"archive.readings\" } }",
        )],
    )?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "parts", None)
        .await
        .map_err(show_log)?;
    let tables = [
        ("public.measurements", "archive.readings"),
        ("public.plain", "postgres.plain"),
    ];
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;
    // One plain destination table, named by the plugin after the root; no partition of its own.
    let kinds = count(
        &dst,
        "SELECT count(*) FILTER (WHERE relname = 'readings' AND relkind = 'r') * 10 \
                + count(*) FILTER (WHERE relname LIKE 'm\\_%') FROM pg_class",
    )
    .await?;
    assert_eq!(kinds, 10, "one table `readings`, no partition tables");
    let indexed = count(
        &dst,
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'archive' AND tablename = 'readings' \
         AND indexdef LIKE '%(v)%'",
    )
    .await?;
    assert_eq!(indexed, 1, "the root's secondary index is rebuilt");

    src.batch_execute(MOVES).await?;
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;

    // A partition created while streaming is covered by the root's publication at once.
    src.batch_execute(
        "CREATE TABLE m_af PARTITION OF measurements FOR VALUES IN ('af');
         INSERT INTO measurements SELECT g, 'af', g, 'new' FROM generate_series(20001, 20500) g;",
    )
    .await?;
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;

    // A table attached with rows: logical decoding emits no change for the rows it held, only
    // for those written through it afterwards.
    src.batch_execute(
        "CREATE TABLE m_sa (id int NOT NULL, region text NOT NULL, v int, note text,
                            PRIMARY KEY (id, region));
         INSERT INTO m_sa SELECT g, 'sa', g, 'before' FROM generate_series(30001, 30100) g;
         ALTER TABLE measurements ATTACH PARTITION m_sa FOR VALUES IN ('sa');
         INSERT INTO measurements SELECT g, 'sa', g, 'after' FROM generate_series(30101, 30150) g;",
    )
    .await?;
    // PostgreSQL 14's pgoutput keeps the verdict "not published" it reached for m_sa before the
    // ATTACH for the rest of the walsender's life, so rows written through it afterwards are
    // dropped too (fixed in 15); the resync below is the remedy on every version.
    if server_major(&src).await? >= 15 {
        wait_until(
            &dst,
            "SELECT count(*) = 50 FROM archive.readings WHERE region = 'sa'",
            None,
        )
        .await
        .map_err(show_log)?;
    }
    let before = count(
        &dst,
        "SELECT count(*) FROM archive.readings WHERE note = 'before'",
    )
    .await?;
    assert_eq!(before, 0, "rows held before ATTACH are not in the stream");
    // The documented remedy: copy the partitioned table again while the others stream.
    let path = args[2].clone();
    cli(&[
        "resync",
        "--config",
        &path,
        "--table",
        "public.measurements",
    ]);
    src.batch_execute("INSERT INTO measurements VALUES (40000, 'eu', 1, 'during resync')")
        .await?;
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;
    let all = digest(&src, "public.measurements").await?;
    assert_eq!(all.0, 12000 - 240 + 500 + 150 + 1, "{all:?}");
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partitions_leaf_each_leaf_is_a_table_of_its_own() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    // In root mode, a partition listed with its partitioned table would never get a change.
    let (both, _) = pair.config(
        "both",
        "",
        "tables = [\"public.measurements\", \"public.m_us_low\"]",
    )?;
    let (ok, _, err) = run_bin(&["run", "--config", both.to_str().unwrap()]);
    assert!(!ok, "a partition listed with its root is refused");
    assert!(
        err.contains("public.m_us_low is a partition of public.measurements"),
        "{err}"
    );
    let (args, log) = plugin_support::binary_run(
        &pair,
        "leaves",
        &format!("schema = \"public\"\npartitions = \"leaf\"{SPLIT}"),
        &[],
    )?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "leaves", None)
        .await
        .map_err(show_log)?;
    let tables = [
        ("public.m_eu", "postgres.m_eu"),
        ("public.m_us_low", "postgres.m_us_low"),
        ("public.m_us_high", "postgres.m_us_high"),
        ("public.m_asia", "postgres.m_asia"),
        ("public.plain", "postgres.plain"),
    ];
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;
    let roots = count(
        &dst,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'postgres' \
         AND tablename IN ('measurements', 'm_us')",
    )
    .await?;
    assert_eq!(roots, 0, "partitioned tables have no destination table");
    // A row moving between partitions leaves one leaf and arrives in the other.
    src.batch_execute(MOVES).await?;
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;
    let moved = count(
        &dst,
        "SELECT count(*) FROM postgres.m_asia WHERE id <= 3000 AND id % 3 = 0",
    )
    .await?;
    assert!(moved > 900, "rows moved from eu to asia: {moved}");
    child.stop_cleanly()?;

    // A partition created while stopped is a new table at the next start: copied, then streamed.
    src.batch_execute(
        "CREATE TABLE m_af PARTITION OF measurements FOR VALUES IN ('af');
         INSERT INTO measurements SELECT g, 'af', g, 'new' FROM generate_series(20001, 20500) g;",
    )
    .await?;
    let mut child = spawn_bin(&args, &log);
    wait_streaming(&dst, "leaves", None)
        .await
        .map_err(show_log)?;
    src.batch_execute("INSERT INTO measurements VALUES (20501, 'af', 1, 'streamed')")
        .await?;
    let mut tables = tables.to_vec();
    tables.push(("public.m_af", "postgres.m_af"));
    wait_same(&src, &dst, &tables, None)
        .await
        .map_err(show_log)?;
    assert_eq!(
        count(&dst, "SELECT count(*) FROM postgres.m_af").await?,
        501
    );
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_copy_killed_after_some_leaves_starts_again_and_copies_every_row_once(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, body text) PARTITION BY RANGE (id);
         CREATE TABLE big_1 PARTITION OF big FOR VALUES FROM (0) TO (50000);
         CREATE TABLE big_2 PARTITION OF big FOR VALUES FROM (50000) TO (100000);
         CREATE TABLE big_3 PARTITION OF big FOR VALUES FROM (100000) TO (150000);
         CREATE TABLE big_4 PARTITION OF big FOR VALUES FROM (150000) TO (200000);
         INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(0, 199999) g;",
    )
    .await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "bigparts",
        "schema = \"public\"\n[snapshot]\nparallel = 1\n",
        &[],
    )?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    // Killed once a leaf's rows are committed and before the table is recorded as copied.
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM pgmorph.tables WHERE connector = 'bigparts' \
         AND phase = 'copying' AND rows_copied > 0)",
        None,
    )
    .await
    .map_err(show_log)?;
    child.kill();
    let partial = count(&dst, "SELECT count(*) FROM postgres.big").await?;
    assert!(
        partial > 0 && partial < 200_000,
        "killed mid-copy: {partial} rows"
    );
    src.batch_execute("UPDATE big SET body = 'moved' WHERE id % 1000 = 0")
        .await?;
    let mut child = spawn_bin(&args, &log);
    wait_streaming(&dst, "bigparts", None)
        .await
        .map_err(show_log)?;
    wait_same(&src, &dst, &[("public.big", "postgres.big")], None)
        .await
        .map_err(show_log)?;
    child.stop_cleanly()?;
    Ok(())
}

/// Prints the snapshot time of one partitioned table (four leaves) against the same rows in a
/// plain table, two workers each: `cargo nextest run -p pgmorph-e2e --test partitions
/// --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn snapshot_time_of_a_partitioned_table_against_a_plain_one() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE parted (id int PRIMARY KEY, body text) PARTITION BY HASH (id);
         CREATE TABLE parted_0 PARTITION OF parted FOR VALUES WITH (MODULUS 4, REMAINDER 0);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES WITH (MODULUS 4, REMAINDER 1);
         CREATE TABLE parted_2 PARTITION OF parted FOR VALUES WITH (MODULUS 4, REMAINDER 2);
         CREATE TABLE parted_3 PARTITION OF parted FOR VALUES WITH (MODULUS 4, REMAINDER 3);
         INSERT INTO parted SELECT g, repeat('p', 100) FROM generate_series(1, 600000) g;
         CREATE TABLE plain (id int PRIMARY KEY, body text);
         INSERT INTO plain SELECT * FROM parted;",
    )
    .await?;
    src.batch_execute("VACUUM ANALYZE").await?;
    for round in 0..2 {
        for table in ["parted", "plain"] {
            let name = format!("m{round}{table}");
            let (args, log) = plugin_support::binary_run(
                &pair,
                &name,
                &format!(
                    "tables = [\"public.{table}\"]\n[snapshot]\nparallel = 2\nrange_min_mb = 16\n"
                ),
                &[],
            )?;
            let started = std::time::Instant::now();
            let mut child = spawn_bin(&args, &log);
            wait_streaming(&dst, &name, None).await?;
            println!(
                "{table}: snapshot of 600,000 rows in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            child.stop_cleanly()?;
            let copied = count(&dst, &format!("SELECT count(*) FROM postgres.{table}")).await?;
            assert_eq!(copied, 600_000);
            dst.batch_execute(&format!("DROP TABLE postgres.{table}"))
                .await?;
        }
    }
    Ok(())
}
