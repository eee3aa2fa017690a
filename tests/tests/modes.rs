//! Snapshot modes and table selection behave as SynchDB documents them.

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{digest, wait_same, wait_streaming, Pair, Running};

const SCHEMA: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, note text);
CREATE TABLE audit (what text, seq int);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
INSERT INTO orders (customer, note) SELECT g % 50 + 1, 'o' || g FROM generate_series(1, 500) g;
"#;

const TABLES: [(&str, &str); 3] = [
    ("public.customers", "postgres.customers"),
    ("public.orders", "postgres.orders"),
    ("public.audit", "postgres.audit"),
];

/// Writes `n` small transactions touching every table.
fn writer(pair: &Pair, from: i32, n: i32) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let url = pair.source.url("postgres");
    tokio::spawn(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        for i in from..from + n {
            client
                .batch_execute(&format!(
                    "BEGIN; INSERT INTO orders (customer, note) VALUES ({i} % 50 + 1, 'live {i}');
                     UPDATE customers SET name = 'n{i}' WHERE id = {i} % 50 + 1;
                     INSERT INTO audit VALUES ('w', {i}); COMMIT;"
                ))
                .await?;
        }
        Ok(())
    })
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_recopies_only_snapshot_tables_and_streams_the_rest_without_gap(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, first) = pair.config("alw", "", "schema = \"public\"")?;
    let running = Running::start(&first, Mode::Initial);
    wait_streaming(&dst, "alw", Some(&running)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    running.stop().await?;

    // Break the destination copy of customers; changes keep coming while stopped.
    dst.batch_execute("DELETE FROM postgres.customers WHERE id <= 10")
        .await?;
    writer(&pair, 0, 100).await??;
    let copied_before = count(
        &dst,
        "SELECT rows_copied FROM pgmorph.tables WHERE source_table = 'public.orders'",
    )
    .await?;

    let (_, always) = pair.config(
        "alw",
        "",
        "schema = \"public\"\nsnapshot_tables = [\"public.customers\"]",
    )?;
    let running = Running::start(&always, Mode::Always);
    let load = writer(&pair, 100, 200);
    wait_streaming(&dst, "alw", Some(&running)).await?;
    load.await??;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    // Only customers was copied again; orders streamed on from where it was.
    let copied_after = count(
        &dst,
        "SELECT rows_copied FROM pgmorph.tables WHERE source_table = 'public.orders'",
    )
    .await?;
    assert_eq!(copied_before, copied_after);
    assert_eq!(
        count(
            &dst,
            "SELECT count(*) - count(DISTINCT seq) FROM postgres.audit"
        )
        .await?,
        0
    );
    // The temporary slot of the re-copy is gone.
    assert_eq!(
        count(&src, "SELECT count(*) FROM pg_replication_slots").await?,
        1
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_the_list_is_copied_alone_under_write_load() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, first) = pair.config(
        "add",
        "",
        "tables = [\"public.customers\", \"public.audit\"]",
    )?;
    let running = Running::start(&first, Mode::Initial);
    wait_streaming(&dst, "add", Some(&running)).await?;
    running.stop().await?;
    let snap_rows = count(
        &dst,
        "SELECT snapshot_rows FROM pgmorph.stats WHERE connector = 'add'",
    )
    .await?;

    let (_, second) = pair.config(
        "add",
        "",
        "tables = [\"public.customers\", \"public.audit\", \"public.orders\"]",
    )?;
    let load = writer(&pair, 0, 300);
    let running = Running::start(&second, Mode::Initial);
    load.await??;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    // Only the new table's rows were copied.
    let orders_rows = count(
        &dst,
        "SELECT rows_copied FROM pgmorph.tables WHERE source_table = 'public.orders'",
    )
    .await?;
    let snap_rows_after = count(
        &dst,
        "SELECT snapshot_rows FROM pgmorph.stats WHERE connector = 'add'",
    )
    .await?;
    assert_eq!(snap_rows_after, snap_rows + orders_rows);
    assert_eq!(
        count(
            &dst,
            "SELECT count(*) - count(DISTINCT seq) FROM postgres.audit"
        )
        .await?,
        0
    );

    // Removing a table stops replicating it; its destination table stays.
    running.stop().await?;
    let (_, third) = pair.config("add", "", "tables = [\"public.customers\"]")?;
    let running = Running::start(&third, Mode::Initial);
    wait_streaming(&dst, "add", Some(&running)).await?;
    src.batch_execute("INSERT INTO audit VALUES ('after removal', -1)")
        .await?;
    src.batch_execute("UPDATE customers SET name = 'marker' WHERE id = 1")
        .await?;
    pgmorph_e2e::wait_until(
        &dst,
        "SELECT name = 'marker' FROM postgres.customers WHERE id = 1",
        Some(&running),
    )
    .await?;
    assert_eq!(
        count(&dst, "SELECT count(*) FROM postgres.audit WHERE seq = -1").await?,
        0
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_initial_only_and_schemasync() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;

    // schemasync: tables exist, empty, connector paused.
    let (_, sync) = pair.config("sync", "", "tables = [\"public.customers\"]")?;
    Running::start(&sync, Mode::Schemasync).join().await?;
    let row = dst
        .query_one(
            "SELECT stage, state FROM pgmorph.state WHERE name = 'sync'",
            &[],
        )
        .await?;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("schema sync".into(), "paused".into())
    );
    assert_eq!(
        count(&dst, "SELECT count(*) FROM postgres.customers").await?,
        0
    );

    // initial_only: copies, exits 0, and a restart does not copy again.
    dst.batch_execute("DROP TABLE postgres.customers").await?;
    let (_, only) = pair.config("only", "", "tables = [\"public.customers\"]")?;
    Running::start(&only, Mode::InitialOnly).join().await?;
    assert_eq!(
        digest(&dst, "postgres.customers").await?,
        digest(&src, "public.customers").await?
    );
    dst.batch_execute("INSERT INTO postgres.customers VALUES (1000, 'local')")
        .await?;
    Running::start(&only, Mode::InitialOnly).join().await?;
    assert_eq!(
        count(
            &dst,
            "SELECT count(*) FROM postgres.customers WHERE id = 1000"
        )
        .await?,
        1
    );

    // no_data: empty table, then only new changes.
    let text = pair
        .config_text("nodata", "", "tables = [\"public.orders\"]")
        .replace("[destination]\n", "[destination]\nschema = \"nd\"\n");
    let nodata = pgmorph::config::Config::parse(&text, std::path::Path::new("nodata.toml"))?;
    let running = Running::start(&nodata, Mode::NoData);
    wait_streaming(&dst, "nodata", Some(&running)).await?;
    assert_eq!(count(&dst, "SELECT count(*) FROM nd.orders").await?, 0);
    src.batch_execute("INSERT INTO orders (customer, note) VALUES (1, 'new')")
        .await?;
    pgmorph_e2e::wait_until(
        &dst,
        "SELECT count(*) = 1 FROM nd.orders WHERE note = 'new'",
        Some(&running),
    )
    .await?;
    running.stop().await?;
    let running = Running::start(&nodata, Mode::NoData);
    wait_streaming(&dst, "nodata", Some(&running)).await?;
    src.batch_execute("INSERT INTO orders (customer, note) VALUES (1, 'newer')")
        .await?;
    pgmorph_e2e::wait_until(&dst, "SELECT count(*) = 2 FROM nd.orders", Some(&running)).await?;
    running.stop().await?;
    Ok(())
}

/// SynchDB's object-mapping workflow: schemasync, review the attribute view, change the rules,
/// schemasync again (tables follow in place), then stream new changes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemasync_review_change_rules_then_stream() -> anyhow::Result<()> {
    use pgmorph::plugin::reload::build_transform;
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    std::fs::copy(
        std::path::Path::new(env!("PGMORPH_PLUGIN_DIR")).join("pgmorph_plugin_rename.wasm"),
        plugins.join("10-rename.wasm"),
    )?;
    let top = format!("plugin_dir = \"{}\"", plugins.display());
    let (path, _) = pair.config("review", &top, "tables = [\"public.customers\"]")?;
    let load = |path: &std::path::Path| -> anyhow::Result<(
        pgmorph::config::Config,
        Box<dyn pgmorph::transform::Transform>,
    )> {
        let c = pgmorph::config::Config::load(path)?;
        let t = build_transform(&c, None)?;
        Ok((c, t))
    };
    let (c, t) = load(&path)?;
    Running::start_with(&c, Mode::Schemasync, t).join().await?;
    let cols = count(
        &dst,
        "SELECT count(*) FROM pgmorph.att_view WHERE name = 'review' AND dest_column IS NOT NULL",
    )
    .await?;
    assert_eq!(cols, 2);
    dst.batch_execute("INSERT INTO postgres.customers VALUES (-1, 'kept in place')")
        .await?;

    // New rules: another table name and column name.
    let text = std::fs::read_to_string(&path)?
        + "\n[plugins.10-rename.config]\ntables = { \"public.customers\" = \"crm.clients\" }\n\
           columns = { \"public.customers.name\" = \"full_name\" }\n";
    std::fs::write(&path, text)?;
    let (c, t) = load(&path)?;
    Running::start_with(&c, Mode::Schemasync, t).join().await?;
    let kept = count(
        &dst,
        "SELECT count(*) FROM crm.clients WHERE full_name = 'kept in place'",
    )
    .await?;
    assert_eq!(kept, 1, "the table was renamed in place, not rebuilt");
    let changed_by: String = dst
        .query_one("SELECT changed_by FROM pgmorph.att_view WHERE name = 'review' AND dest_column = 'full_name'", &[])
        .await?
        .get(0);
    assert_eq!(changed_by, "10-rename");

    // Resume: stream new changes only.
    let (c, t) = load(&path)?;
    let running = Running::start_with(&c, Mode::NoData, t);
    wait_streaming(&dst, "review", Some(&running)).await?;
    src.batch_execute("INSERT INTO customers VALUES (9999, 'new one')")
        .await?;
    pgmorph_e2e::wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM crm.clients WHERE full_name = 'new one')",
        Some(&running),
    )
    .await?;
    assert_eq!(count(&dst, "SELECT count(*) FROM crm.clients").await?, 2);
    running.stop().await?;
    Ok(())
}
