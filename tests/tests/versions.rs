//! Features that depend on the source's PostgreSQL major version, on real servers: failover
//! slots (17+) and publication row filters (15+) where the source has them, and the clear
//! refusal where it does not. `scripts/test-matrix` runs these on every major.

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{run_bin, server_major, wait_same, wait_streaming, Pair, Running};
use tokio_postgres::Client;

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    client: &Client,
    sql: &str,
) -> anyhow::Result<T> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// `pgmorph validate`'s line for check `name`.
fn validate_line(config: &std::path::Path, name: &str) -> String {
    let (_, report, stderr) = run_bin(&["validate", "--config", config.to_str().unwrap()]);
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no check {name} in:\n{report}{stderr}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_slot_on_17_and_later_and_a_clear_refusal_before() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    let major = server_major(&src).await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g;",
    )
    .await?;
    let on = "tables = [\"public.items\"]\nfailover_slot = true";
    let (path, config) = pair.config("fo", "", on)?;
    let failover = "SELECT failover FROM pg_replication_slots WHERE slot_name = 'pgmorph_fo'";

    if major < 17 {
        let err = Running::start(&config, Mode::Initial)
            .join()
            .await
            .expect_err("a failover slot on PostgreSQL < 17 is refused")
            .to_string();
        assert!(
            err.contains(&format!("PostgreSQL {major}."))
                && err.contains("source.failover_slot")
                && err.contains("17"),
            "{err}"
        );
        let slots: i64 = scalar(&src, "SELECT count(*) FROM pg_replication_slots").await?;
        assert_eq!(slots, 0, "no slot was created");
        let check = validate_line(&path, "source.version");
        assert!(
            check.starts_with("error ") && check.contains("failover_slot"),
            "{check}"
        );
        return Ok(());
    }

    let check = validate_line(&path, "source.version");
    assert!(
        check.starts_with("ok ") && check.contains("a failover slot"),
        "{check}"
    );
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "fo", Some(&running)).await?;
    assert!(
        scalar::<bool>(&src, failover).await?,
        "created with FAILOVER"
    );
    src.batch_execute(
        "INSERT INTO items VALUES (101, 'new'); UPDATE items SET v = 'x' WHERE id = 1",
    )
    .await?;
    let tables = [("public.items", "postgres.items")];
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    running.stop().await?;

    // Turned off, then on again: the existing slot is altered on each start.
    let (_, off) = pair.config(
        "fo",
        "",
        "tables = [\"public.items\"]\nfailover_slot = false",
    )?;
    let running = Running::start(&off, Mode::Initial);
    wait_streaming(&dst, "fo", Some(&running)).await?;
    assert!(
        !scalar::<bool>(&src, failover).await?,
        "altered to FAILOVER false"
    );
    src.batch_execute("DELETE FROM items WHERE id = 2").await?;
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    running.stop().await?;
    let (path, config) = pair.config("fo", "", on)?; // the same file, failover on again
    let check = validate_line(&path, "source.failover");
    assert!(
        check.starts_with("warning ") && check.contains("failover = false"),
        "{check}"
    );
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "fo", Some(&running)).await?;
    assert!(
        scalar::<bool>(&src, failover).await?,
        "altered to FAILOVER true"
    );
    src.batch_execute("INSERT INTO items VALUES (102, 'again')")
        .await?;
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    running.stop().await?;
    Ok(())
}

const FILTERED_SCHEMA: &str = "
CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL, note text);
ALTER TABLE orders REPLICA IDENTITY FULL;
INSERT INTO orders SELECT g, g % 200, repeat('n', 200) FROM generate_series(1, 20000) g;
CREATE TABLE evens (id int PRIMARY KEY, v text);
INSERT INTO evens SELECT g, 'v' || g FROM generate_series(1, 1000) g;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 10) g;
";

const FILTERS: &str = "tables = [\"public.orders\", \"public.evens\", \"public.plain\"]
[source.row_filters]
\"public.orders\" = \"amount > 100\"
\"public.evens\" = \"id % 2 = 0\"";

/// Source views holding the rows each filter selects, paired with the destination tables.
const FILTERED: [(&str, &str); 3] = [
    (
        "(SELECT * FROM public.orders WHERE amount > 100)",
        "postgres.orders",
    ),
    (
        "(SELECT * FROM public.evens WHERE id % 2 = 0)",
        "postgres.evens",
    ),
    ("public.plain", "postgres.plain"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_filters_on_15_and_later_and_a_clear_refusal_before() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    let major = server_major(&src).await?;
    src.batch_execute(FILTERED_SCHEMA).await?;
    // Every table of more than one page is split into page ranges: the filter goes into the
    // page-range COPY too.
    let top = "[snapshot]\nrange_min_mb = 0\nparallel = 2";
    let (path, config) = pair.config("rf", top, FILTERS)?;

    if major < 15 {
        let err = Running::start(&config, Mode::Initial)
            .join()
            .await
            .expect_err("row filters on PostgreSQL 14 are refused")
            .to_string();
        assert!(
            err.contains(&format!("PostgreSQL {major}."))
                && err.contains("[source.row_filters]")
                && err.contains("public.orders"),
            "{err}"
        );
        let publications: i64 = scalar(&src, "SELECT count(*) FROM pg_publication").await?;
        assert_eq!(publications, 0, "no publication was created");
        let check = validate_line(&path, "source.version");
        assert!(
            check.starts_with("error ") && check.contains("row_filters"),
            "{check}"
        );
        let (ok, _, stderr) = run_bin(&["setup-source", "--config", path.to_str().unwrap()]);
        assert!(!ok && stderr.contains("PostgreSQL 15 or later"), "{stderr}");
        return Ok(());
    }

    // `setup-source` publishes with the filters; the run then finds the publication as wanted.
    let (ok, stdout, stderr) = run_bin(&["setup-source", "--config", path.to_str().unwrap()]);
    assert!(
        ok && stdout.contains("publishes 3 tables (2 through a row filter)"),
        "{stdout}{stderr}"
    );

    let check = validate_line(&path, "source.row_filters");
    assert!(
        check.starts_with("ok ") && check.contains("public.orders WHERE (amount > 100)"),
        "{check}"
    );
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "rf", Some(&running)).await?;
    wait_same(&src, &dst, &FILTERED, Some(&running)).await?;
    let copied: i64 = scalar(&dst, "SELECT count(*) FROM postgres.orders").await?;
    assert_eq!(copied, 20000 / 200 * 99, "only the rows with amount > 100");

    // Rows moving into and out of the filter by UPDATE arrive as INSERT and DELETE.
    src.batch_execute(
        "INSERT INTO orders VALUES (30001, 150, 'in'), (30002, 50, 'out');
         UPDATE orders SET amount = 150 WHERE id BETWEEN 1 AND 50;          -- into the filter
         UPDATE orders SET amount = 10 WHERE id BETWEEN 101 AND 150;       -- out of it
         UPDATE orders SET note = 'still in' WHERE id BETWEEN 151 AND 160;  -- inside it
         UPDATE orders SET note = 'still out' WHERE id BETWEEN 201 AND 210; -- outside it
         DELETE FROM orders WHERE id IN (161, 211);
         BEGIN;
         UPDATE orders SET amount = 199 WHERE id = 3;
         UPDATE orders SET amount = 0 WHERE id = 3;
         COMMIT;
         INSERT INTO evens VALUES (1001, 'odd'), (1002, 'even');
         DELETE FROM evens WHERE id IN (3, 4);
         UPDATE evens SET v = 'changed' WHERE id BETWEEN 5 AND 8;
         INSERT INTO plain VALUES (11, 'p11');",
    )
    .await?;
    wait_same(&src, &dst, &FILTERED, Some(&running)).await?;
    running.stop().await?;

    // A changed filter under the existing slot is refused, and the publication keeps its own.
    let changed = FILTERS.replace("amount > 100", "amount > 50");
    let (_, changed_config) = pair.config("rf", top, &changed)?;
    let err = Running::start(&changed_config, Mode::Initial)
        .join()
        .await
        .expect_err("a changed filter is refused")
        .to_string();
    assert!(
        err.contains("row filter of public.orders would change")
            && err.contains("WHERE (amount > 100)")
            && err.contains("WHERE (amount > 50)")
            && err.contains("--mode always"),
        "{err}"
    );
    let published: String = scalar(
        &src,
        "SELECT rowfilter FROM pg_publication_tables WHERE pubname = 'pgmorph_rf' AND tablename = 'orders'",
    )
    .await?;
    assert_eq!(published, "(amount > 100)", "nothing was changed");

    // The documented way: copy every table again under the new filter.
    let running = Running::start(&changed_config, Mode::Always);
    let refiltered = [(
        "(SELECT * FROM public.orders WHERE amount > 50)",
        "postgres.orders",
    )];
    wait_same(&src, &dst, &refiltered, Some(&running)).await?;
    src.batch_execute("UPDATE orders SET amount = 60 WHERE id BETWEEN 101 AND 110")
        .await?;
    wait_same(&src, &dst, &refiltered, Some(&running)).await?;
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_filter_outside_the_replica_identity_is_refused_before_the_source_breaks(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, _dst) = pair.clients().await?;
    if server_major(&src).await? < 15 {
        return Ok(()); // no row filters: the refusal above covers 14
    }
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL);
         INSERT INTO orders SELECT g, g FROM generate_series(1, 10) g;",
    )
    .await?;
    let (path, config) = pair.config(
        "ri",
        "",
        "tables = [\"public.orders\"]\n[source.row_filters]\n\"public.orders\" = \"amount > 5\"",
    )?;
    let check = validate_line(&path, "source.row_filters");
    assert!(
        check.starts_with("error ") && check.contains("column amount"),
        "{check}"
    );
    let err = Running::start(&config, Mode::Initial)
        .join()
        .await
        .expect_err("a filter outside the replica identity is refused")
        .to_string();
    assert!(
        err.contains("uses column amount, outside its replica identity (id)")
            && err.contains("REPLICA IDENTITY FULL"),
        "{err}"
    );
    let publications: i64 = scalar(&src, "SELECT count(*) FROM pg_publication").await?;
    assert_eq!(publications, 0, "nothing was published");
    // The source's writers are unaffected.
    src.batch_execute("UPDATE orders SET amount = 0 WHERE id = 1; DELETE FROM orders WHERE id = 2")
        .await?;
    Ok(())
}
