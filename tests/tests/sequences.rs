//! Sequences through the real binary: their values set on the destination at the end of the
//! snapshot and by `pgmorph sync-sequences`, an owned sequence following its renamed table, and
//! the cut-over procedure of the README: writers stop, the lag reaches zero, `pause`,
//! `sync-sequences`, writers move to the destination and their inserts do not collide.

mod plugin_support;

use pgmorph_e2e::{run_bin, spawn_bin, wait_same, wait_streaming, wait_until, Pair};
use tokio_postgres::Client;

const SCHEMA: &str = r#"
CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
CREATE TABLE events (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE SEQUENCE ticket_numbers START 1000;
CREATE TABLE tickets (id int PRIMARY KEY DEFAULT nextval('ticket_numbers'), note text);
CREATE SEQUENCE invoice_numbers START 5000 INCREMENT 5;
SELECT nextval('invoice_numbers') FROM generate_series(1, 3);
INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 100) g;
INSERT INTO events (note) SELECT 'e' || g FROM generate_series(1, 100) g;
INSERT INTO tickets (note) SELECT 't' || g FROM generate_series(1, 100) g;
"#;

const RENAME: &str = "config = { tables = { \"public.orders\" = \"sales.orders_v2\" }, \
                      columns = { \"public.orders.id\" = \"order_id\" } }";

const TABLES: [(&str, &str); 3] = [
    ("public.orders", "sales.orders_v2"),
    ("public.events", "postgres.events"),
    ("public.tickets", "postgres.tickets"),
];

fn cli(args: &[&str]) -> String {
    let (ok, out, err) = run_bin(args);
    assert!(ok, "pgmorph {args:?} failed: {err}");
    out
}

async fn one(client: &Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Application writers: rows through every sequence, on the source.
async fn write(client: &Client, rounds: usize) -> anyhow::Result<()> {
    for _ in 0..rounds {
        client
            .batch_execute(
                "INSERT INTO orders (note) VALUES ('w'); INSERT INTO events (note) VALUES ('w');
                 INSERT INTO tickets (note) VALUES ('w'); SELECT nextval('invoice_numbers');",
            )
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_with_synced_sequences_has_no_colliding_inserts() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = plugin_support::binary_run(
        &pair,
        "cut",
        "schema = \"public\"",
        &[("20-rename", "rename", RENAME)],
    )?;
    let path = args[2].clone();
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "cut", None).await.map_err(show_log)?;

    // The end of the snapshot set every sequence: owned ones beside their (renamed) column.
    let status = cli(&["status", "--config", &path]);
    assert!(status.contains("sequences       4 synced at"), "{status}");
    assert_eq!(
        one(&dst, "SELECT last_value FROM sales.orders_v2_order_id_seq").await?,
        100
    );
    let owned = dst
        .query_one(
            "SELECT pg_get_serial_sequence('sales.orders_v2', 'order_id'), \
                    pg_get_serial_sequence('postgres.events', 'id')",
            &[],
        )
        .await?;
    assert_eq!(
        (owned.get::<_, String>(0), owned.get::<_, String>(1)),
        (
            "sales.orders_v2_order_id_seq".into(),
            "postgres.events_id_seq".into()
        )
    );

    // Writers on the source while the connector streams: the destination's sequences fall behind.
    let writer = pair.source.connect("postgres").await?;
    let writers = tokio::spawn(async move { write(&writer, 300).await });
    write(&src, 300).await?;
    writers.await??;
    let behind = one(&dst, "SELECT last_value FROM sales.orders_v2_order_id_seq").await?;
    assert_eq!(behind, 100, "only a sync moves the destination's sequences");

    // Cut-over: writers stopped; wait for zero lag; pause; sync the sequences.
    let written: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    wait_until(
        &src,
        &format!(
            "SELECT confirmed_flush_lsn >= '{written}' FROM pg_replication_slots \
             WHERE slot_name = 'pgmorph_cut'"
        ),
        None,
    )
    .await
    .map_err(show_log)?;
    wait_same(&src, &dst, &TABLES, None)
        .await
        .map_err(show_log)?;
    cli(&["pause", "--config", &path]);
    wait_until(
        &dst,
        "SELECT state = 'paused' FROM pgmorph.state WHERE name = 'cut'",
        None,
    )
    .await
    .map_err(show_log)?;
    let out = cli(&["sync-sequences", "--config", &path]);
    assert!(out.contains("4 sequences synced"), "{out}");

    // Writers now insert on the destination, through the same defaults.
    for _ in 0..50 {
        dst.batch_execute(
            "INSERT INTO sales.orders_v2 (note) VALUES ('after');
             INSERT INTO postgres.events (note) VALUES ('after');
             INSERT INTO postgres.tickets (id, note) VALUES (nextval('postgres.ticket_numbers'), 'after');",
        )
        .await?;
    }
    for (table, key) in [
        ("sales.orders_v2", "order_id"),
        ("postgres.events", "id"),
        ("postgres.tickets", "id"),
    ] {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE note = 'after' AND {key} > \
                    (SELECT max({key}) FROM {table} WHERE note <> 'after')) FROM {table}"
        );
        assert_eq!(
            one(&dst, &sql).await?,
            50,
            "{table}: new keys follow the source's"
        );
    }
    let source_next = one(&src, "SELECT nextval('invoice_numbers')").await?;
    let dest_next = one(&dst, "SELECT nextval('postgres.invoice_numbers')").await?;
    assert_eq!(
        dest_next, source_next,
        "a sequence no table owns keeps its name and value"
    );
    let status = cli(&["status", "--config", &path]);
    assert!(status.contains("sequences       4 synced at"), "{status}");
    child.stop_cleanly()?;
    Ok(())
}
