//! Plugins in the data path of a real replication: a filter + rename + mask + type-remap chain
//! gives the same rows through the snapshot and through CDC, and dead letters land in the
//! destination. The `pgmorph` binary itself (single-threaded runtime, plugin calls on their own
//! thread) runs a row plugin through the snapshot and CDC.

mod plugin_support;

use pgmorph::pipeline::Mode;
use pgmorph::plugin::PluginChain;
use pgmorph_e2e::{spawn_bin, wait_streaming, wait_until, Pair, RowPathOnly, Running};

const SCHEMA: &str = r#"
CREATE TABLE orders (id int PRIMARY KEY, cust_id int NOT NULL, email text, amount numeric(12,2),
                     status text, created timestamptz, meta json);
CREATE TABLE audit_log (id int PRIMARY KEY, what text);
INSERT INTO orders VALUES
    (1, 7, 'a@example.com', 12.50, 'paid', '2024-01-02 03:04:05.5+00', '{"a": 1}'),
    (2, 8, 'b@example.com', 1.00, 'test', '2024-01-02 03:04:05+00', NULL),
    (3, 9, 'c@example.com', 2, 'paid', '2024-06-30 23:59:59+02', '[]');
INSERT INTO audit_log VALUES (1, 'boot');
"#;

fn chain(plugins: &[(&str, &str, &str)]) -> PluginChain {
    let (dir, config) = plugin_support::plugin_dir(plugins);
    PluginChain::load_with(dir.path(), &config.plugins, &plugin_support::options()).unwrap()
}

/// Fails with the connector's own error when it stopped.
async fn ok_or_run_error(result: anyhow::Result<()>, running: Running) -> anyhow::Result<Running> {
    match result {
        Ok(()) => Ok(running),
        Err(e) if running.is_finished() => {
            Err(e.context(format!("connector ended: {:?}", running.join().await)))
        }
        Err(e) => Err(e),
    }
}

async fn rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_reshapes_snapshot_and_cdc_alike() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config("plugins", "", "schema = \"public\"")?;
    let chain = chain(&[
        (
            "10-filter",
            "filter",
            r#"config = { skip_tables = ["public.audit_*"], skip_columns = ["*.meta"], skip_rows = [{ table = "public.orders", column = "status", equals = "test" }] }"#,
        ),
        (
            "20-rename",
            "rename",
            r#"config = { tables = { "public.orders" = "sales.orders_v2" }, columns = { "public.orders.cust_id" = "customer_id" } }"#,
        ),
        (
            "30-mask",
            "mask",
            r#"config = { salt = "pepper", hash = ["*.email"] }"#,
        ),
        (
            "40-type-remap",
            "type-remap",
            r#"config = { columns = { "sales.orders_v2.created" = "timestamp", "sales.orders_v2.amount" = "text" } }"#,
        ),
    ]);
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    let r = wait_streaming(&dst, "plugins", Some(&running)).await;
    let running = ok_or_run_error(r, running).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 2 FROM sales.orders_v2",
        Some(&running),
    )
    .await?;

    // The same rows again, through CDC.
    src.batch_execute(
        "INSERT INTO orders SELECT id + 100, cust_id, email, amount, status, created, meta FROM orders",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 4 FROM sales.orders_v2",
        Some(&running),
    )
    .await?;
    let q = "SELECT customer_id::text, email, amount, status, created::text FROM sales.orders_v2 WHERE id % 100 = $ ORDER BY id";
    for id in [1, 3] {
        let both = rows(&dst, &q.replace('$', &id.to_string())).await?;
        assert_eq!(both.len(), 2, "row {id}: {both:?}");
        assert_eq!(both[0], both[1], "snapshot and CDC disagree on row {id}");
    }
    let row1 = rows(
        &dst,
        &q.replace('$', "1").replace("ORDER BY id", "AND id = 1"),
    )
    .await?;
    let [customer, email, amount, status, created] = &row1[0][..] else {
        panic!()
    };
    assert_eq!(customer.as_deref(), Some("7"));
    assert_eq!(email.as_ref().unwrap().len(), 64, "email is hashed");
    assert_eq!(amount.as_deref(), Some("12.50"));
    assert_eq!(status.as_deref(), Some("paid"));
    assert_eq!(
        created.as_deref(),
        Some("2024-01-02 03:04:05.5"),
        "timestamptz became UTC timestamp"
    );
    let shape = rows(
        &dst,
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
           FROM information_schema.columns WHERE table_schema = 'sales' AND table_name = 'orders_v2'",
    )
    .await?;
    assert_eq!(
        shape[0][0].as_deref(),
        Some("id integer, customer_id integer, email text, amount text, status text, created timestamp without time zone")
    );
    let audit = rows(&dst, "SELECT to_regclass('postgres.audit_log')::text").await?;
    assert_eq!(audit[0][0], None, "filtered table is not replicated");

    // Updates and deletes find their rows; a filtered row's changes stay filtered.
    src.batch_execute(
        "UPDATE orders SET email = 'z@example.com' WHERE id = 1;
         DELETE FROM orders WHERE id = 3;
         UPDATE orders SET amount = 5 WHERE id = 2;",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 3 AND bool_and(id <> 3) FROM sales.orders_v2",
        Some(&running),
    )
    .await?;
    wait_until(
        &dst,
        "SELECT email <> (SELECT email FROM sales.orders_v2 WHERE id = 101) FROM sales.orders_v2 WHERE id = 1",
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_land_in_the_destination() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g;",
    )
    .await?;
    let (_, config) = pair.config("dead", "", "schema = \"public\"")?;
    let chain = chain(&[(
        "50-fault",
        "fault",
        "on_error = \"dead_letter\"\nconfig = { mode = \"trap\", when_column = \"id\", when_equals = \"3\" }",
    )]);
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    let r = wait_streaming(&dst, "dead", Some(&running)).await;
    let running = ok_or_run_error(r, running).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 4 AND bool_and(id <> 3) FROM postgres.t",
        Some(&running),
    )
    .await?;
    src.batch_execute("UPDATE t SET v = 'again' WHERE id = 3; INSERT INTO t VALUES (6, 'v6')")
        .await?;
    wait_until(&dst, "SELECT count(*) = 5 FROM postgres.t", Some(&running)).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 2 AND bool_and(plugin = '50-fault' AND source_table = 'public.t' AND error LIKE '%panicked: fault plugin: trap%')
           AND array_agg(op ORDER BY id) = ARRAY['snapshot', 'update']
           AND bool_and(row_data->'new'->>'id' = '3')
           FROM pgmorph.dead_letters",
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}

/// Plugins of a benchmark case: `(file stem, crate, settings)`.
type Plugins<'a> = &'a [(&'a str, &'a str, &'a str)];

/// Rows/s of a snapshot through the whole pipeline with no plugin, a pass-through plugin that
/// sees every row and column, and the filter + rename + mask chain, on the same data in one run:
/// `cargo test -p pgmorph-e2e --release --test plugin_e2e -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn pipeline_throughput_with_plugins() -> anyhow::Result<()> {
    const ROWS: i64 = 200_000;
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(&format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, name text, email text, qty int, price numeric(12,2),
                             at timestamptz, flag boolean, note text, ratio float8, doc jsonb);
         INSERT INTO bench SELECT g, 'name ' || g, 'user' || g || '@example.com', g % 100, g / 7.0,
                '2024-01-01'::timestamptz + g * interval '1 second', g % 2 = 0,
                'a longer piece of text in the row', g / 3.0, '{{\"k\": [1, 2, 3]}}'
           FROM generate_series(1, {ROWS}) g;"
    ))
    .await?;
    let cases: [(&str, Plugins); 4] = [
        ("no plugin", &[]),
        ("no plugin, row path forced", &[]),
        (
            "pass-through (all rows and columns)",
            &[("00-pass", "passthrough", "config = { rows = true }")],
        ),
        (
            "filter + rename + mask",
            &[
                (
                    "10-filter",
                    "filter",
                    r#"config = { skip_rows = [{ table = "public.bench", column = "qty", equals = "-1" }] }"#,
                ),
                (
                    "20-rename",
                    "rename",
                    r#"config = { columns = { "*.name" = "full_name" } }"#,
                ),
                (
                    "30-mask",
                    "mask",
                    r#"config = { salt = "s", hash = ["*.email"] }"#,
                ),
            ],
        ),
    ];
    for (i, (label, plugins)) in cases.iter().enumerate() {
        let name = format!("bench{i}");
        let text = pair.config_text(&name, "", "tables = [\"public.bench\"]")
            + &format!("schema = \"{name}\"\n");
        let config = pgmorph::config::Config::parse(&text, std::path::Path::new("bench.toml"))?;
        let transform: Box<dyn pgmorph::transform::Transform> = if i == 1 {
            Box::new(RowPathOnly)
        } else if plugins.is_empty() {
            Box::new(pgmorph::transform::Identity)
        } else {
            Box::new(chain(plugins))
        };
        let started = std::time::Instant::now();
        let running = Running::start_with(&config, Mode::Initial, transform);
        wait_until(
            &dst,
            &format!("SELECT count(*) = {ROWS} FROM {name}.bench"),
            Some(&running),
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{label:<40} {:>9.0} rows/s ({secs:.2} s for {ROWS} rows, snapshot)",
            ROWS as f64 / secs
        );
        running.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_row_plugins_in_snapshot_and_cdc() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    // Several row batches (of 1,000) through the snapshot and through one CDC transaction.
    src.batch_execute(
        "CREATE TABLE contacts (id int PRIMARY KEY, email text, plain text);
         INSERT INTO contacts SELECT g, 'c' || g || '@example.com', 'c' || g || '@example.com'
           FROM generate_series(1, 2500) g;",
    )
    .await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "binmask",
        "schema = \"public\"\ntables = [\"public.orders\", \"public.contacts\"]",
        &[(
            "30-mask",
            "mask",
            "config = { salt = \"pepper\", hash = [\"*.email\"] }",
        )],
    )?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "binmask", None)
        .await
        .map_err(show_log)?;
    // The same emails again, through CDC.
    src.batch_execute("INSERT INTO orders SELECT id + 100, cust_id, email, amount, status, created, meta FROM orders")
        .await?;
    wait_until(&dst, "SELECT count(*) = 6 FROM postgres.orders", None)
        .await
        .map_err(show_log)?;
    let pairs = dst
        .query(
            "SELECT a.email, b.email FROM postgres.orders a JOIN postgres.orders b ON b.id = a.id + 100",
            &[],
        )
        .await?;
    assert_eq!(pairs.len(), 3);
    for row in &pairs {
        let (snapshot, cdc): (String, String) = (row.get(0), row.get(1));
        assert_eq!(snapshot, cdc, "snapshot and CDC mask differently");
        assert!(!snapshot.contains('@'), "email not masked: {snapshot}");
    }
    src.batch_execute(
        "INSERT INTO contacts SELECT g, 'c' || g || '@example.com', 'c' || g || '@example.com'
           FROM generate_series(2501, 5000) g",
    )
    .await?;
    wait_until(&dst, "SELECT count(*) = 5000 FROM postgres.contacts", None)
        .await
        .map_err(show_log)?;
    // Every row carries the hash of its own value: no row lost, repeated or shifted between
    // the batches that were in the row step at once.
    let own_hash = dst
        .query_one(
            "SELECT count(*) FROM postgres.contacts WHERE email = encode(sha256(
                 convert_to('pepper', 'UTF8') || '\\x00'::bytea || convert_to(plain, 'UTF8')), 'hex')",
            &[],
        )
        .await?
        .get::<_, i64>(0);
    assert_eq!(own_hash, 5000);

    // One transaction touching both tables by turns: its batches go through the plugins in one
    // step and must still be applied in source order (the update of row 5001 after its insert).
    src.batch_execute(
        "BEGIN;
         INSERT INTO contacts VALUES (5001, 'first@example.com', 'first@example.com');
         UPDATE orders SET email = 'new1@example.com' WHERE id = 1;
         UPDATE contacts SET email = 'second@example.com', plain = 'second@example.com' WHERE id = 5001;
         INSERT INTO orders SELECT 200, cust_id, 'o200@example.com', amount, status, created, meta FROM orders WHERE id = 1;
         DELETE FROM contacts WHERE id = 1;
         UPDATE contacts SET email = 'two@example.com', plain = 'two@example.com' WHERE id = 2;
         COMMIT;",
    )
    .await?;
    wait_until(&dst, "SELECT count(*) = 7 FROM postgres.orders", None)
        .await
        .map_err(show_log)?;
    let after = dst
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE id IN (2, 5001) AND email = encode(sha256(
                 convert_to('pepper', 'UTF8') || '\\x00'::bytea || convert_to(plain, 'UTF8')), 'hex')),
               bool_or(id = 1)
               FROM postgres.contacts",
            &[],
        )
        .await?;
    assert_eq!(
        after.get::<_, i64>(0),
        5000,
        "one row deleted, one inserted"
    );
    assert_eq!(
        after.get::<_, i64>(1),
        2,
        "rows 2 and 5001 carry their final values' hashes"
    );
    assert!(!after.get::<_, bool>(2), "row 1 was deleted");
    let masked = dst
        .query_one(
            "SELECT (SELECT email FROM postgres.orders WHERE id = 1) = encode(sha256(
                 convert_to('pepper', 'UTF8') || '\\x00'::bytea || convert_to('new1@example.com', 'UTF8')), 'hex')",
            &[],
        )
        .await?;
    assert!(
        masked.get::<_, bool>(0),
        "orders row 1 carries the new email's hash"
    );

    // Small transactions back to back, then a new column: rows that wait for the plugins go
    // through them under the shape they were read with, and the new column follows.
    let mut script = String::new();
    for id in 6001..6100 {
        script.push_str(&format!(
            "INSERT INTO contacts VALUES ({id}, 'k{id}@example.com', 'k{id}@example.com');"
        ));
    }
    script.push_str(
        "ALTER TABLE contacts ADD COLUMN note text;
         INSERT INTO contacts VALUES (6100, 'k6100@example.com', 'k6100@example.com', 'late');",
    );
    src.batch_execute(&script).await?;
    wait_until(&dst, "SELECT count(*) = 5100 FROM postgres.contacts", None)
        .await
        .map_err(show_log)?;
    let late = dst
        .query_one(
            "SELECT note, count(*) OVER () FROM postgres.contacts WHERE id >= 6001 AND email = encode(sha256(
                 convert_to('pepper', 'UTF8') || '\\x00'::bytea || convert_to(plain, 'UTF8')), 'hex')
               ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    assert_eq!(late.get::<_, i64>(1), 100, "every new row masked once");
    assert_eq!(late.get::<_, Option<String>>(0).as_deref(), Some("late"));
    child.stop_cleanly()?;
    Ok(())
}

/// Rows of half a megabyte through a plugin that sees every value: batches are cut by bytes as
/// well as rows, so neither pgmorph's memory nor the plugin's 64 MiB cap is reached by a
/// snapshot of 48 MiB or by one source transaction of 96 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_pass_plugins_in_bounded_memory() -> anyhow::Result<()> {
    const VALUE: usize = 512 * 1024;
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, body text);
         INSERT INTO docs SELECT g, repeat(chr(97 + g % 26), {VALUE}) FROM generate_series(1, 96) g;"
    ))
    .await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "bigvals",
        "schema = \"public\"",
        &[("passthrough", "passthrough", "config = { rows = true }")],
    )?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "bigvals", None)
        .await
        .map_err(show_log)?;
    src.batch_execute(&format!(
        "INSERT INTO docs SELECT g, repeat(chr(97 + g % 26), {VALUE}) FROM generate_series(1001, 1192) g"
    ))
    .await?;
    wait_until(
        &dst,
        &format!(
            "SELECT count(*) = 288 AND bool_and(length(body) = {VALUE} AND body = repeat(chr(97 + id % 26), {VALUE})) FROM postgres.docs"
        ),
        None,
    )
    .await
    .map_err(show_log)?;
    let peak = child.peak_rss_mib().expect("pgmorph is running");
    println!("peak RSS {peak} MiB");
    assert!(
        peak < 160,
        "pgmorph peaked at {peak} MiB for 144 MiB of values"
    );
    child.stop_cleanly()?;
    Ok(())
}
