//! Operating a connector: pause, resume, stop, re-sync one table, offsets, two connectors side
//! by side, the attribute view, status and reset.

use std::time::Duration;

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{digest, run_bin, wait_same, wait_streaming, wait_until, Pair, Running};

const SCHEMA: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, note text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
INSERT INTO orders (customer, note) SELECT g % 100 + 1, 'o' || g FROM generate_series(1, 1000) g;
"#;

const TABLES: [(&str, &str); 2] = [
    ("public.customers", "postgres.customers"),
    ("public.orders", "postgres.orders"),
];

fn cli(args: &[&str]) -> String {
    let (ok, out, err) = run_bin(args);
    assert!(ok, "pgmorph {args:?} failed: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_resync_and_stop_from_the_command_line() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (path, config) = pair.config("ops", "", "schema = \"public\"")?;
    let path = path.to_str().unwrap();
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "ops", Some(&running)).await?;

    cli(&["pause", "--config", path]);
    wait_until(
        &dst,
        "SELECT state = 'paused' FROM pgmorph.state WHERE name = 'ops'",
        Some(&running),
    )
    .await?;
    src.batch_execute("INSERT INTO customers VALUES (500, 'while paused')")
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let arrived = dst
        .query_opt("SELECT 1 FROM postgres.customers WHERE id = 500", &[])
        .await?;
    assert!(
        arrived.is_none(),
        "a paused connector must not apply changes"
    );
    cli(&["resume", "--config", path]);
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM postgres.customers WHERE id = 500)",
        Some(&running),
    )
    .await?;

    // Damage one destination table, then re-sync it alone while writes continue.
    dst.batch_execute("DELETE FROM postgres.orders WHERE id % 3 = 0")
        .await?;
    let out = cli(&["resync", "--config", path, "--table", "public.orders"]);
    assert!(out.contains("public.orders"), "{out}");
    src.batch_execute("INSERT INTO orders (customer, note) SELECT 1, 'during resync' FROM generate_series(1, 200)")
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;

    let status = cli(&["status", "--config", path]);
    assert!(
        status.contains("change data capture") && status.contains("public.orders"),
        "{status}"
    );
    assert!(status.contains("lag_bytes"), "{status}");

    cli(&["stop", "--config", path]);
    running.join().await?;
    let state: String = dst
        .query_one(
            "SELECT state || '/' || pid FROM pgmorph.state WHERE name = 'ops'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(state, "stopped/-1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_attribute_view_two_connectors_and_reset() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (path_a, a) = pair.config("conn_a", "", "tables = [\"public.customers\"]")?;
    let text_b = pair
        .config_text("conn_b", "", "tables = [\"public.orders\"]")
        .replace("[destination]\n", "[destination]\nschema = \"b\"\n");
    let b = pgmorph::config::Config::parse(&text_b, std::path::Path::new("b.toml"))?;
    let run_a = Running::start(&a, Mode::Initial);
    let run_b = Running::start(&b, Mode::Initial);
    wait_streaming(&dst, "conn_a", Some(&run_a)).await?;
    wait_streaming(&dst, "conn_b", Some(&run_b)).await?;
    src.batch_execute(
        "UPDATE customers SET name = 'x' WHERE id = 1; INSERT INTO orders (customer) VALUES (1)",
    )
    .await?;
    wait_same(
        &src,
        &dst,
        &[
            ("public.customers", "postgres.customers"),
            ("public.orders", "b.orders"),
        ],
        None,
    )
    .await?;
    assert_eq!(
        dst.query_one("SELECT count(*) FROM pgmorph.state_view", &[])
            .await?
            .get::<_, i64>(0),
        2
    );

    // Attribute view: source and destination side by side.
    let att = dst
        .query(
            "SELECT source_table, dest_table, attnum, source_column, dest_column, source_type, dest_type \
             FROM pgmorph.att_view WHERE name = 'conn_a' ORDER BY attnum",
            &[],
        )
        .await?;
    assert_eq!(att.len(), 2);
    assert_eq!(att[1].get::<_, String>(0), "public.customers");
    assert_eq!(att[1].get::<_, String>(1), "postgres.customers");
    assert_eq!(att[1].get::<_, Option<String>>(4).as_deref(), Some("name"));
    assert_eq!(att[1].get::<_, Option<String>>(6).as_deref(), Some("text"));

    // Stopping one connector leaves the other streaming.
    run_a.stop().await?;
    src.batch_execute("INSERT INTO orders (customer) VALUES (2); UPDATE customers SET name = 'skipped' WHERE id = 2")
        .await?;
    wait_same(&src, &dst, &[("public.orders", "b.orders")], Some(&run_b)).await?;

    // offset set past the change made while conn_a was stopped: it is skipped.
    let path_a = path_a.to_str().unwrap();
    let now: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let out = cli(&["offset", "get", "--config", path_a]);
    assert!(out.contains("applied on the destination"), "{out}");
    let (ok, _, err) = run_bin(&["offset", "set", "0/1", "--yes", "--config", path_a]);
    assert!(
        !ok && err.contains("before the slot's confirmed position"),
        "{err}"
    );
    cli(&["offset", "set", &now, "--yes", "--config", path_a]);
    src.batch_execute("UPDATE customers SET name = 'after offset' WHERE id = 3")
        .await?;
    let run_a = Running::start(&a, Mode::Initial);
    wait_until(
        &dst,
        "SELECT name = 'after offset' FROM postgres.customers WHERE id = 3",
        Some(&run_a),
    )
    .await?;
    let skipped: String = dst
        .query_one("SELECT name FROM postgres.customers WHERE id = 2", &[])
        .await?
        .get(0);
    assert_eq!(
        skipped, "c2",
        "the change before the new offset was skipped"
    );
    run_a.stop().await?;
    run_b.stop().await?;

    // reset drops slot, publication and state of one connector only.
    cli(&["reset", "--yes", "--config", path_a]);
    let slots: Vec<String> = src
        .query(
            "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(slots, vec!["pgmorph_conn_b".to_string()]);
    let pubs: i64 = src
        .query_one("SELECT count(*) FROM pg_publication", &[])
        .await?
        .get(0);
    assert_eq!(pubs, 1);
    assert_eq!(digest(&dst, "pgmorph.state").await?.0, 1);
    Ok(())
}
