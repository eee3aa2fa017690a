//! Schema changes: a plugin's explicit destination schema is obeyed, and source DDL (with
//! `setup-source --ddl`) reaches the destination through the plugins' mapping, in stream
//! order, under a concurrent write load and across a kill -9 of the real binary.

mod plugin_support;

use std::time::Duration;

use pgmorph::pipeline::Mode;
use pgmorph::plugin::PluginChain;
use pgmorph_e2e::{
    capture_source_ddl, run_bin, spawn_bin, wait_same, wait_streaming, wait_until, Pair, Running,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Loads a plugin chain of example plugins.
fn chain(plugins: &[(&str, &str, &str)]) -> PluginChain {
    let (dir, config) = plugin_support::plugin_dir(plugins);
    PluginChain::load_with(dir.path(), &config.plugins, &plugin_support::options()).unwrap()
}

/// A destination table's columns: `name type nullable`, in order.
async fn columns(dst: &Client, schema: &str, table: &str) -> anyhow::Result<String> {
    Ok(dst
        .query_one(
            "SELECT coalesce(string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' \
             ORDER BY ordinal_position), '') FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await?
        .get(0))
}

/// A destination table's primary key columns, in order.
async fn primary_key(dst: &Client, table: &str) -> anyhow::Result<String> {
    Ok(dst
        .query_one(
            "SELECT coalesce(string_agg(a.attname, ', ' ORDER BY k.ord), '') FROM pg_index i, \
             unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord), pg_attribute a \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
               AND a.attrelid = i.indrelid AND a.attnum = k.attnum",
            &[&table],
        )
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_chooses_the_destination_schema() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, amount int);
         CREATE TABLE customers (id int PRIMARY KEY, name text);
         CREATE TABLE notes (id int PRIMARY KEY, body text);
         INSERT INTO orders VALUES (1, 10), (2, 20);
         INSERT INTO customers VALUES (1, 'ann');
         INSERT INTO notes VALUES (1, 'kept where it was');",
    )
    .await?;
    let (_, config) = pair.config("explicit", "", "schema = \"public\"")?;
    let chain = chain(&[(
        "10-rename",
        "rename",
        r#"config = { tables = { "public.orders" = "public.orders_v2", "public.customers" = "crm.clients" } }"#,
    )]);
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    wait_streaming(&dst, "explicit", Some(&running)).await?;
    let tables = [
        ("public.orders", "public.orders_v2"),
        ("public.customers", "crm.clients"),
        ("public.notes", "postgres.notes"),
    ];
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    src.batch_execute(
        "INSERT INTO orders VALUES (3, 30); UPDATE orders SET amount = 11 WHERE id = 1;
         INSERT INTO customers VALUES (2, 'bob'); INSERT INTO notes VALUES (2, 'cdc');",
    )
    .await?;
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    let (orders, _) = pgmorph_e2e::digest(&dst, "public.orders_v2").await?;
    assert_eq!(orders, 3, "snapshot and CDC rows land in public");
    let strays: i64 = dst
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('orders_v2', 'clients', 'orders', 'customers') \
             AND schemaname NOT IN ('public', 'crm')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(strays, 0, "nothing lands in the default destination schema");
    running.stop().await?;
    Ok(())
}

/// Inserts rows (id only: every DDL below keeps it insertable) into the table with `oid`, one
/// every few milliseconds, following its renames, until stopped.
struct Writer {
    stop: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<i32>>,
}

impl Writer {
    fn start(client: Client, oid: u32) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let (mut id, mut written) = (10_000, 0);
            let mut table = "items".to_string();
            while !*stopped.borrow_and_update() {
                let sql = format!("INSERT INTO {table} (id) VALUES ({id})");
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        id += 1;
                        written += 1;
                    }
                    Err(_) => {
                        table = client
                            .query_one("SELECT $1::oid::regclass::text", &[&oid])
                            .await?
                            .get(0);
                    }
                }
                let _ = tokio::time::timeout(Duration::from_millis(3), stopped.changed()).await;
            }
            Ok(written)
        });
        Self { stop, handle }
    }

    async fn stop(self) -> anyhow::Result<i32> {
        let _ = self.stop.send(true);
        self.handle.await?
    }
}

/// One source DDL and what the destination must look like after it.
struct Step {
    ddl: &'static str,
    /// A marker change after the DDL (`$` is the marker id).
    marker: &'static str,
    /// The source table and the columns compared, in source terms.
    source: (&'static str, &'static str),
    /// The destination table and the same columns, in mapped terms.
    dest: (&'static str, &'static str, &'static str),
    /// The destination columns afterwards.
    columns: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        ddl: "ALTER TABLE items ADD COLUMN note text DEFAULT 'n/a'",
        marker: "INSERT INTO items (id, a, b, c, note) VALUES ($, 1, 'x', 1, 'marked')",
        source: ("items", "id, a, b, c, note"),
        dest: ("public", "items_v2", "id, alpha, b, c, memo"),
        columns: "id integer NO, alpha integer YES, b text YES, c integer YES, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items RENAME COLUMN b TO b2",
        marker: "INSERT INTO items (id, a, b2) VALUES ($, 2, 'renamed')",
        source: ("items", "id, a, b2, c, note"),
        dest: ("public", "items_v2", "id, alpha, b2, c, memo"),
        columns: "id integer NO, alpha integer YES, b2 text YES, c integer YES, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items ALTER COLUMN c TYPE bigint",
        marker: "INSERT INTO items (id, c) VALUES ($, 9000000000)",
        source: ("items", "id, a, b2, c, note"),
        dest: ("public", "items_v2", "id, alpha, b2, c, memo"),
        columns: "id integer NO, alpha integer YES, b2 text YES, c bigint YES, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items ALTER COLUMN c SET NOT NULL",
        marker: "INSERT INTO items (id, c) VALUES ($, 4)",
        source: ("items", "id, a, b2, c, note"),
        dest: ("public", "items_v2", "id, alpha, b2, c, memo"),
        columns: "id integer NO, alpha integer YES, b2 text YES, c bigint NO, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items ALTER COLUMN c DROP NOT NULL",
        marker: "INSERT INTO items (id, c) VALUES ($, 5)",
        source: ("items", "id, a, b2, c, note"),
        dest: ("public", "items_v2", "id, alpha, b2, c, memo"),
        columns: "id integer NO, alpha integer YES, b2 text YES, c bigint YES, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items DROP COLUMN a",
        marker: "INSERT INTO items (id, b2) VALUES ($, 'no a')",
        source: ("items", "id, b2, c, note"),
        dest: ("public", "items_v2", "id, b2, c, memo"),
        columns: "id integer NO, b2 text YES, c bigint YES, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (id, c)",
        marker:
            "INSERT INTO items (id, c) VALUES ($, 7); UPDATE items SET b2 = 'updated' WHERE id = 1",
        source: ("items", "id, b2, c, note"),
        dest: ("public", "items_v2", "id, b2, c, memo"),
        columns: "id integer NO, b2 text YES, c bigint NO, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items RENAME TO items2",
        marker: "INSERT INTO items2 (id, b2) VALUES ($, 'moved'); DELETE FROM items2 WHERE id = 2",
        source: ("items2", "id, b2, c, note"),
        dest: ("shop", "items_v3", "id, b2, c, memo"),
        columns: "id integer NO, b2 text YES, c bigint NO, memo text YES",
    },
    Step {
        ddl: "ALTER TABLE items2 SET SCHEMA archive",
        marker: "INSERT INTO archive.items2 (id, b2) VALUES ($, 'archived')",
        source: ("archive.items2", "id, b2, c, note"),
        dest: ("archive", "items_v4", "id, b2, c, memo"),
        columns: "id integer NO, b2 text YES, c bigint NO, memo text YES",
    },
];

/// Rows of a table up to `upto` and the markers, with the given columns, as a query.
fn compared(table: &str, cols: &str, upto: i32) -> String {
    format!("(SELECT {cols} FROM {table} WHERE id <= {upto} OR id >= 100000)")
}

/// Runs one step: the DDL under the write load, a marker change after it, then compares.
async fn run_step(src: &Client, dst: &Client, k: usize, step: &Step) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    src.batch_execute(step.ddl).await?;
    let upto: i32 = src
        .query_one(
            &format!("SELECT max(id) FROM {} WHERE id < 100000", step.source.0),
            &[],
        )
        .await?
        .get(0);
    let marker = 100_000 + k as i32;
    src.batch_execute(&step.marker.replace('$', &marker.to_string()))
        .await?;
    let (schema, table, cols) = step.dest;
    let dest = format!("{schema}.{table}");
    wait_until(
        dst,
        &format!("SELECT count(*) = 1 FROM {dest} WHERE id = {marker}"),
        None,
    )
    .await
    .map_err(|e| e.context(format!("after {}", step.ddl)))?;
    eprintln!(
        "{:?} from the DDL to the marker after it on the destination: {}",
        started.elapsed(),
        step.ddl
    );
    let pair = (
        compared(step.source.0, step.source.1, upto),
        compared(&dest, cols, upto),
    );
    wait_same(src, dst, &[(pair.0.as_str(), pair.1.as_str())], None)
        .await
        .map_err(|e| e.context(format!("after {}", step.ddl)))?;
    assert_eq!(
        columns(dst, schema, table).await?,
        step.columns,
        "after {}",
        step.ddl
    );
    Ok(())
}

/// Stages the binary's config with the rename plugin and installs the DDL triggers.
fn stage(
    pair: &Pair,
    name: &str,
    flags: &[&str],
) -> anyhow::Result<(Vec<String>, std::path::PathBuf)> {
    let (args, log) = plugin_support::binary_run(
        pair,
        name,
        "tables = [\"public.items\"]",
        &[(
            "10-rename",
            "rename",
            r#"config = { tables = { "public.items" = "public.items_v2", "public.items2" = "shop.items_v3", "archive.items2" = "archive.items_v4" }, columns = { "public.items.a" = "alpha", "*.note" = "memo" } }"#,
        )],
    )?;
    let setup = [&["setup-source", "--config", &args[2], "--ddl"], flags].concat();
    let (ok, out, err) = run_bin(&setup);
    assert!(ok, "setup-source failed: {out}{err}");
    assert!(out.contains("DDL triggers installed"), "{out}");
    Ok((args, log))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ddl_follows_the_mapping_under_load() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, a int, b text, c int DEFAULT 0);
         INSERT INTO items SELECT g, g, 'b' || g, g FROM generate_series(1, 200) g;
         CREATE SCHEMA archive;",
    )
    .await?;
    let (args, log) = stage(&pair, "ddl", &["--drop-tables"])?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "ddl", None).await.map_err(show_log)?;
    assert_eq!(
        columns(&dst, "public", "items_v2").await?,
        "id integer NO, alpha integer YES, b text YES, c integer YES"
    );
    let oid: u32 = src
        .query_one("SELECT 'items'::regclass::oid", &[])
        .await?
        .get(0);
    let writer = Writer::start(pair.source.connect("postgres").await?, oid);
    for (k, step) in STEPS.iter().enumerate() {
        run_step(&src, &dst, k, step).await.map_err(show_log)?;
        if step.ddl.contains("PRIMARY KEY") {
            assert_eq!(primary_key(&dst, "public.items_v2").await?, "id, c");
        }
    }
    let written = writer.stop().await?;
    assert!(written > 20, "the load wrote {written} rows");
    eprintln!("{written} rows written by the concurrent load during the DDL steps");
    let gone: bool = dst
        .query_one(
            "SELECT to_regclass('public.items_v2') IS NULL AND to_regclass('shop.items_v3') IS NULL",
            &[],
        )
        .await?
        .get(0);
    assert!(
        gone,
        "the renamed and moved source table moved to its mapped names"
    );
    wait_same(
        &src,
        &dst,
        &[(
            "(SELECT id, b2, c, note FROM archive.items2)",
            "(SELECT id, b2, c, memo FROM archive.items_v4)",
        )],
        None,
    )
    .await
    .map_err(show_log)?;
    let history: Vec<String> = dst
        .query(
            "SELECT statement FROM pgmorph.ddl_history WHERE connector = 'ddl' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<&str> = STEPS.iter().map(|s| s.ddl).collect();
    assert_eq!(history, expected, "every DDL is recorded once, in order");

    // Installed with --drop-tables: a dropped source table goes on the destination too.
    src.batch_execute("DROP TABLE archive.items2").await?;
    wait_history(&dst, "ddl", STEPS.len() as i64 + 1)
        .await
        .map_err(show_log)?;
    let dropped: bool = dst
        .query_one("SELECT to_regclass('archive.items_v4') IS NULL", &[])
        .await?
        .get(0);
    assert!(dropped);
    child.stop_cleanly()?;
    Ok(())
}

/// Waits until the destination's history holds `n` commands of connector `name`.
async fn wait_history(dst: &Client, name: &str, n: i64) -> anyhow::Result<()> {
    wait_until(
        dst,
        &format!("SELECT count(*) = {n} FROM pgmorph.ddl_history WHERE connector = '{name}'"),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ddl_survives_kill_9() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, b text);
         INSERT INTO items SELECT g, 'b' || g FROM generate_series(1, 100) g;",
    )
    .await?;
    let (args, log) = stage(&pair, "ddlkill", &[])?;
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    let mut child = spawn_bin(&args, &log);
    wait_streaming(&dst, "ddlkill", None)
        .await
        .map_err(show_log)?;

    // Killed after the DDL was applied, before the next data change.
    src.batch_execute("ALTER TABLE items RENAME COLUMN b TO b2")
        .await?;
    wait_history(&dst, "ddlkill", 1).await.map_err(show_log)?;
    child.kill();
    src.batch_execute("INSERT INTO items (id, b2) VALUES (1001, 'after the kill')")
        .await?;
    let mut child = spawn_bin(&args, &log);
    let same = [(
        "(SELECT id, b2 FROM items)",
        "(SELECT id, b2 FROM public.items_v2)",
    )];
    wait_same(&src, &dst, &same, None).await.map_err(show_log)?;

    // Killed before the DDL reached it: old-shape rows, the DDL and new-shape rows all wait
    // in the stream while the catalog already shows the new shape.
    child.kill();
    src.batch_execute(
        "INSERT INTO items (id, b2) VALUES (1002, 'before the DDL');
         ALTER TABLE items ADD COLUMN n int DEFAULT 5;
         INSERT INTO items (id, b2, n) VALUES (1003, 'after the DDL', 7);
         ALTER TABLE items RENAME COLUMN b2 TO b3;
         ALTER TABLE items ADD COLUMN k serial;
         UPDATE items SET b3 = 'updated' WHERE id = 1;",
    )
    .await?;
    let mut child = spawn_bin(&args, &log);
    let same = [(
        "(SELECT id, b3, n FROM items)",
        "(SELECT id, b3, n FROM public.items_v2)",
    )];
    wait_same(&src, &dst, &same, None).await.map_err(show_log)?;
    wait_history(&dst, "ddlkill", 4).await.map_err(show_log)?;
    // A volatile default (a sequence) gave each source row its own value, which no change
    // carries: existing rows get NULL on the destination, new rows their value.
    assert_eq!(
        columns(&dst, "public", "items_v2").await?,
        "id integer NO, b3 text YES, n integer YES, k integer YES"
    );
    src.batch_execute("INSERT INTO items (id, b3) VALUES (1004, 'with k')")
        .await?;
    wait_until(
        &dst,
        "SELECT k IS NOT NULL FROM public.items_v2 WHERE id = 1004",
        None,
    )
    .await
    .map_err(show_log)?;

    // By default a dropped source table is recorded and its destination table kept.
    src.batch_execute("DROP TABLE items").await?;
    wait_history(&dst, "ddlkill", 5).await.map_err(show_log)?;
    let (rows, _) = pgmorph_e2e::digest(&dst, "public.items_v2").await?;
    assert_eq!(rows, 104, "the destination table stays with its rows");
    let (ok, out, err) = run_bin(&["status", "--config", &args[2]]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("source_ddl      5 applied, last: DROP TABLE public.items at"),
        "{out}"
    );
    child.stop_cleanly()?;

    // Without the triggers, nothing more is emitted.
    let (ok, out, err) = run_bin(&["teardown-source", "--config", &args[2]]);
    assert!(ok && out.contains("removed"), "{out}{err}");
    let left: i64 = src
        .query_one(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgmorph%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_the_destination_refuses_stops_the_connector() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, b text);
         INSERT INTO items VALUES (1, 'one');",
    )
    .await?;
    let (_, config) = pair.config("refused", "", "tables = [\"public.items\"]")?;
    capture_source_ddl(&src, &config, "refused", "items").await?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "refused", Some(&running)).await?;
    // The source converts with its own expression; the destination's cast of 'one' fails.
    let ddl = "ALTER TABLE items ALTER COLUMN b TYPE int USING length(b)";
    src.batch_execute(ddl).await?;
    let error = tokio::time::timeout(pgmorph_e2e::DEADLINE, running.join())
        .await?
        .expect_err("the connector stops");
    let text = pgmorph::error_chain::one_line(&error);
    assert!(text.contains(ddl), "{text}");
    assert!(
        text.contains("invalid input syntax for type integer"),
        "{text}"
    );
    let (applied, b_type): (i64, String) = {
        let r = dst
            .query_one(
                "SELECT (SELECT count(*) FROM pgmorph.ddl_history), \
                 (SELECT data_type FROM information_schema.columns \
                  WHERE table_schema = 'postgres' AND table_name = 'items' AND column_name = 'b')",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    assert_eq!((applied, b_type.as_str()), (0, "text"), "nothing applied");

    // With `on_ddl_error = "skip"` the same command, read again from the slot, is recorded as
    // skipped and the rows after it are applied to the table as it stands.
    let text = pair.config_text("refused", "", "tables = [\"public.items\"]")
        + "on_ddl_error = \"skip\"\n";
    let path = pair.dir.path().join("refused-skip.toml");
    std::fs::write(&path, &text)?;
    let config = pgmorph::config::Config::parse(&text, &path)?;
    let running = Running::start(&config, Mode::Initial);
    src.batch_execute("INSERT INTO items VALUES (2, 7)").await?;
    wait_until(
        &dst,
        "SELECT b = '7' FROM postgres.items WHERE id = 2",
        Some(&running),
    )
    .await?;
    let (skipped, error, b_type): (bool, String, String) = {
        let r = dst
            .query_one(
                "SELECT skipped, error, (SELECT data_type FROM information_schema.columns \
                  WHERE table_schema = 'postgres' AND table_name = 'items' AND column_name = 'b') \
                 FROM pgmorph.ddl_history WHERE connector = 'refused'",
                &[],
            )
            .await?;
        (r.get(0), r.get(1), r.get(2))
    };
    assert!(skipped);
    assert!(
        error.starts_with("22P02: invalid input syntax for type integer"),
        "{error}"
    );
    assert_eq!(b_type, "text", "the destination table stays as it was");
    let (ok, out, err) = run_bin(&["status", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ddl_skipped     1, last: ALTER TABLE public.items at"),
        "{out}"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_created_in_a_replicated_schema_follows() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, b text); INSERT INTO items VALUES (1, 'x');",
    )
    .await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "ddlnew",
        "schema = \"public\"",
        &[(
            "10-rename",
            "rename",
            r#"config = { tables = { "public.fresh" = "public.fresh_v2" }, columns = { "*.v" = "value" } }"#,
        )],
    )?;
    let (ok, out, err) = run_bin(&["setup-source", "--config", &args[2], "--ddl"]);
    assert!(ok, "{out}{err}");
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    let mut child = spawn_bin(&args, &log);
    wait_streaming(&dst, "ddlnew", None)
        .await
        .map_err(show_log)?;
    // Created and written in one transaction, then written again; another schema's table is
    // not followed.
    src.batch_execute(
        "CREATE TYPE mood AS ENUM ('ok', 'meh');
         CREATE TABLE fresh (id int PRIMARY KEY, v text NOT NULL, m mood);
         INSERT INTO fresh VALUES (1, 'in the creating transaction', 'meh');
         CREATE SCHEMA other; CREATE TABLE other.ignored (id int PRIMARY KEY);",
    )
    .await?;
    src.batch_execute("INSERT INTO fresh VALUES (2, 'later'); INSERT INTO items VALUES (2, 'y');")
        .await?;
    let same = [
        (
            "(SELECT id, v, m::text FROM fresh)",
            "(SELECT id, value, m::text FROM public.fresh_v2)",
        ),
        ("public.items", "postgres.items"),
    ];
    wait_same(&src, &dst, &same, None).await.map_err(show_log)?;
    assert_eq!(
        columns(&dst, "public", "fresh_v2").await?,
        "id integer NO, value text NO, m USER-DEFINED YES"
    );
    let ignored: bool = dst
        .query_one("SELECT to_regclass('other.ignored') IS NULL AND to_regclass('postgres.ignored') IS NULL", &[])
        .await?
        .get(0);
    assert!(ignored, "only the replicated schema is followed");
    // A restart finds it published, streaming and not to be copied again.
    child.stop_cleanly()?;
    src.batch_execute("UPDATE fresh SET v = 'while stopped' WHERE id = 1")
        .await?;
    let mut child = spawn_bin(&args, &log);
    wait_same(&src, &dst, &same, None).await.map_err(show_log)?;
    let phase: String = dst
        .query_one(
            "SELECT phase FROM pgmorph.tables WHERE connector = 'ddlnew' AND source_table = 'public.fresh'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(phase, "streaming");
    child.stop_cleanly()?;
    Ok(())
}
