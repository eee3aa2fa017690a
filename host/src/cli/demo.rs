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
INSERT INTO customers (name, email) VALUES ('test account', 'qa@example.com');
INSERT INTO orders (cust_id, amount, tags, details)
    SELECT 1 + g % 5, g * 10.5, ARRAY['demo', 'batch' || g % 2], jsonb_build_object('n', g)
    FROM generate_series(1, 8) g;
"#;

const LIVE: &str = r#"
BEGIN;
INSERT INTO customers (name, email) VALUES ('late customer', 'late@example.com');
INSERT INTO orders (cust_id, amount, status, tags) VALUES (7, 99.99, 'paid', ARRAY['live']);
COMMIT;
UPDATE orders SET status = 'shipped' WHERE id <= 3;
DELETE FROM orders WHERE id = 8;
"#;

/// Runs the demo end to end.
pub async fn run() -> anyhow::Result<()> {
    println!(
        "Starting a throwaway source (wal_level=logical) and destination PostgreSQL server..."
    );
    let bin_dir = super::demo_postgres::bin_dir().await?;
    let source_bin = bin_dir.clone();
    let source = tokio::task::spawn_blocking(move || {
        LocalCluster::start_with_bin_dir(source_bin, ClusterOptions::source())
    })
    .await?
    .context("starting the source server")?;
    let dest = tokio::task::spawn_blocking(move || {
        LocalCluster::start_with_bin_dir(bin_dir, ClusterOptions::destination())
    })
    .await?
    .context("starting the destination server")?;
    println!("  source:      {}", source.url("postgres"));
    println!("  destination: {}", dest.url("postgres"));

    let src = source.connect("postgres").await?;
    src.batch_execute(SAMPLE)
        .await
        .context("loading sample data")?;
    let dst = dest.connect("postgres").await?;

    let plugin_dir = tempfile::tempdir()?;
    let with_plugins = demo_plugins(plugin_dir.path()).await;
    let text = format!(
        "name = \"demo\"\n{}[source]\nurl = \"{}\"\nschema = \"public\"\n[destination]\nurl = \"{}\"\n{}",
        if with_plugins {
            format!("plugin_dir = \"{}\"\n", plugin_dir.path().display())
        } else {
            String::new()
        },
        source.url("postgres"),
        dest.url("postgres"),
        if with_plugins { PLUGIN_CONFIG } else { "" },
    );
    println!("\nConnector config:\n{text}");
    let config = Config::parse(&text, std::path::Path::new("demo.toml"))?;
    let transform: Box<dyn pgmorph::transform::Transform> = match &config.plugin_dir {
        Some(dir) => Box::new(pgmorph::plugin::PluginChain::load(dir, &config.plugins)?),
        None => Box::new(pgmorph::transform::Identity),
    };
    let orders = if with_plugins {
        "sales.orders_v2"
    } else {
        "postgres.orders"
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let runner = {
        let config = config.clone();
        tokio::spawn(async move {
            pipeline::run(
                &config,
                RunOptions {
                    mode: Mode::Initial,
                    shutdown,
                    transform,
                    reload: None,
                    wait: Default::default(),
                },
            )
            .await
        })
    };

    wait_for(&dst, "SELECT stage = 'change data capture' AND state = 'polling' FROM pgmorph.state WHERE name = 'demo'", &runner).await?;
    println!("Snapshot done. Destination schema \"postgres\" is named after the source database.");
    if with_plugins {
        println!(
            "The plugins dropped the 'test account' row and orders.details, renamed orders to \
             sales.orders_v2 and cust_id to customer_id, and replaced e-mails by salted hashes."
        );
    }
    show(&dst, "SELECT * FROM postgres.customers ORDER BY id").await?;
    show(&dst, &format!("SELECT * FROM {orders} ORDER BY id")).await?;

    println!("\nMaking live changes on the source:\n{}", LIVE.trim());
    src.batch_execute(LIVE).await?;
    wait_for(
        &dst,
        &format!(
            "SELECT (SELECT count(*) FROM {orders}) = 8 \
             AND (SELECT count(*) FROM {orders} WHERE status = 'shipped') = 3"
        ),
        &runner,
    )
    .await?;
    println!("\nThe destination caught up:");
    show(&dst, "SELECT * FROM postgres.customers ORDER BY id").await?;
    show(&dst, &format!("SELECT * FROM {orders} ORDER BY id")).await?;
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

/// Plugin settings of the demo chain: filter, then rename, then mask.
const PLUGIN_CONFIG: &str = r#"
[plugins.10-filter.config]
skip_columns = ["public.orders.details"]
skip_rows = [{ table = "public.customers", column = "name", equals = "test account" }]

[plugins.20-rename.config]
tables = { "public.orders" = "sales.orders_v2" }
columns = { "public.orders.cust_id" = "customer_id" }

[plugins.30-mask.config]
salt = "demo"
hash = ["public.customers.email"]
"#;

/// Builds the example plugins from the source tree (once; cargo skips it when up to date) and
/// copies them into `dir` in chain order. Returns false, with a note, when that is impossible.
async fn demo_plugins(dir: &std::path::Path) -> bool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = root.join("plugins").join("Cargo.toml");
    if !manifest.exists() {
        println!("(example plugins not found next to this binary: running without plugins)");
        return false;
    }
    if !super::demo_postgres::wasm_target_installed().await {
        println!(
            "(the wasm32-wasip2 Rust target is missing: running without plugins; add it with \
             `rustup target add wasm32-wasip2`)"
        );
        return false;
    }
    println!("Building the example plugins for wasm32-wasip2 (first time only)...");
    let target = root.join("target").join("wasm-plugins");
    let status = tokio::process::Command::new("cargo")
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .await;
    if !status.is_ok_and(|s| s.success()) {
        println!("(building the example plugins failed: running without plugins)");
        return false;
    }
    let built = target.join("wasm32-wasip2").join("release");
    for (from, to) in [
        ("pgmorph_plugin_filter.wasm", "10-filter.wasm"),
        ("pgmorph_plugin_rename.wasm", "20-rename.wasm"),
        ("pgmorph_plugin_mask.wasm", "30-mask.wasm"),
    ] {
        if std::fs::copy(built.join(from), dir.join(to)).is_err() {
            println!("(example plugin {from} missing: running without plugins)");
            return false;
        }
    }
    true
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
