//! `pgmorph demo`: throwaway source and destination servers, sample data, snapshot, live
//! changes, and the destination catching up.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgmorph::cluster::{ClusterOptions, LocalCluster};
use pgmorph::config::Config;
use pgmorph::pipeline::{self, Mode, RunOptions};
use tokio_postgres::{Client, SimpleQueryMessage};

const SAMPLE: &str = r#"
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT '2026-01-01 10:00:00+00'
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    cust_id int NOT NULL REFERENCES customers(id),
    amount numeric(12,2) NOT NULL,
    status order_status NOT NULL DEFAULT 'new',
    tags text[],
    details jsonb
);
INSERT INTO customers (name, email)
    SELECT 'customer ' || g, 'user' || g || '@example.com' FROM generate_series(1, 5) g;
INSERT INTO orders (cust_id, amount, tags, details)
    SELECT 1 + g % 5, g * 10.5, ARRAY['demo', 'batch' || g % 2], jsonb_build_object('n', g)
    FROM generate_series(1, 8) g;
"#;

const LIVE: &str = r#"
BEGIN;
INSERT INTO customers (name, email) VALUES ('late customer', 'late@example.com');
INSERT INTO orders (cust_id, amount, status, tags) VALUES (6, 99.99, 'paid', ARRAY['live']);
COMMIT;
UPDATE orders SET status = 'shipped' WHERE id <= 3;
DELETE FROM orders WHERE id = 8;
"#;

/// Runs the demo end to end.
pub async fn run() -> anyhow::Result<()> {
    println!(
        "Starting a throwaway source (wal_level=logical) and destination PostgreSQL server..."
    );
    let source = tokio::task::spawn_blocking(|| LocalCluster::start(ClusterOptions::source()))
        .await?
        .context("starting the source server")?;
    let dest = tokio::task::spawn_blocking(|| LocalCluster::start(ClusterOptions::destination()))
        .await?
        .context("starting the destination server")?;
    println!("  source:      {}", source.url("postgres"));
    println!("  destination: {}", dest.url("postgres"));

    let src = source.connect("postgres").await?;
    src.batch_execute(SAMPLE)
        .await
        .context("loading sample data")?;
    let dst = dest.connect("postgres").await?;

    let text = format!(
        "name = \"demo\"\n[source]\nurl = \"{}\"\nschema = \"public\"\n[destination]\nurl = \"{}\"\n",
        source.url("postgres"),
        dest.url("postgres")
    );
    println!("\nConnector config:\n{text}");
    let config = Config::parse(&text, std::path::Path::new("demo.toml"))?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runner = {
        let config = config.clone();
        tokio::spawn(async move {
            pipeline::run(
                &config,
                RunOptions {
                    mode: Mode::Initial,
                    shutdown,
                    transform: Box::new(pgmorph::pipeline::transform::Identity),
                },
            )
            .await
        })
    };

    wait_for(&dst, "SELECT stage = 'change data capture' AND state = 'polling' FROM pgmorph.state WHERE name = 'demo'", &runner).await?;
    println!("Snapshot done. Destination schema \"postgres\" (named after the source database):");
    show(&dst, "SELECT * FROM postgres.customers ORDER BY id").await?;
    show(&dst, "SELECT * FROM postgres.orders ORDER BY id").await?;

    println!("\nMaking live changes on the source:\n{}", LIVE.trim());
    src.batch_execute(LIVE).await?;
    wait_for(
        &dst,
        "SELECT (SELECT count(*) FROM postgres.orders) = 8 \
         AND (SELECT count(*) FROM postgres.orders WHERE status = 'shipped') = 3",
        &runner,
    )
    .await?;
    println!("\nThe destination caught up:");
    show(&dst, "SELECT * FROM postgres.orders ORDER BY id").await?;
    show(
        &dst,
        "SELECT name, stage, state, err, last_offset FROM pgmorph.state_view",
    )
    .await?;

    let _ = stop.send(true);
    runner.await??;
    println!("\nConnector stopped cleanly; the throwaway servers are removed on exit.");
    Ok(())
}

async fn wait_for(
    client: &Client,
    sql: &str,
    runner: &tokio::task::JoinHandle<Result<(), pipeline::RunError>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if runner.is_finished() {
            anyhow::bail!("the connector stopped early (see the log above)");
        }
        if let Ok(Some(row)) = client.query_opt(sql, &[]).await {
            if row.get::<_, Option<bool>>(0) == Some(true) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for: {sql}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn show(client: &Client, sql: &str) -> anyhow::Result<()> {
    println!("\n> {sql}");
    let mut header = false;
    for msg in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = msg {
            if !header {
                let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
                println!("  {}", names.join(" | "));
                header = true;
            }
            let values: Vec<&str> = (0..row.len())
                .map(|i| row.get(i).unwrap_or("NULL"))
                .collect();
            println!("  {}", values.join(" | "));
        }
    }
    Ok(())
}
