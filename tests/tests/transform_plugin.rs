//! The `transform` example plugin (SynchDB-style per-column expressions) in a real replication:
//! the destination must hold what PostgreSQL itself computes from the same expressions on the
//! source, after the snapshot and after CDC (inserts, an update of a transformed key, a delete),
//! and a row copied through CDC must come out exactly as its original did in the snapshot.
//! The plugin's own unit tests (parser and evaluator) run here too, on the host target.

mod plugin_support;

use std::path::Path;
use std::process::Command;

use pgmorph::pipeline::Mode;
use pgmorph::plugin::PluginChain;
use pgmorph_e2e::{wait_same, wait_streaming, Pair, Running};

const SCHEMA: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, note text, amount numeric(12,2), status int, code text);
INSERT INTO orders VALUES
    (1, 'first', 12.50, 1, 'ab'),
    (2, NULL, -3.25, 0, NULL),
    (3, 'ünïcode ''quoted''', 0.05, NULL, 'żółw'),
    (4, '', 99999.99, -7, '');
";

/// SynchDB's expressions, as `synchdb_add_objmap(..., 'transform', ...)` would take them.
const CONFIG: &str = r#"
[plugins.30-transform.config.columns]
"postgres.public.orders.id" = "%d + 1000000"
"public.orders.note" = "'>>>>>' || '%d' || '<<<<<'"
"public.orders.amount" = "(%d * 1.1)::numeric(12,2)"
"*.status" = { expr = "CASE WHEN %d IS NULL THEN 'unknown' WHEN %d > 0 THEN 'active' ELSE 'inactive' END", type = "text" }
"public.orders.code" = "coalesce(upper(nullif(%d, '')), 'n/a') || length(%d)::text"
"#;

/// What the destination must hold, computed by PostgreSQL from the source.
const EXPECTED: &str = "(SELECT id + 1000000 AS id,
        '>>>>>' || note || '<<<<<' AS note,
        (amount * 1.1)::numeric(12,2) AS amount,
        CASE WHEN status IS NULL THEN 'unknown' WHEN status > 0 THEN 'active' ELSE 'inactive' END AS status,
        coalesce(upper(nullif(code, '')), 'n/a') || length(code)::text AS code
   FROM public.orders)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_cdc_give_what_postgresql_computes() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    std::fs::copy(
        plugin_support::wasm("transform"),
        plugins.join("30-transform.wasm"),
    )?;
    let (_, config) = pair.config("transform", CONFIG, "schema = \"public\"")?;
    let chain = PluginChain::load_with(&plugins, &config.plugins, &plugin_support::options())?;
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    wait_streaming(&dst, "transform", Some(&running)).await?;
    wait_same(&src, &dst, &[(EXPECTED, "postgres.orders")], Some(&running)).await?;
    let status_type: String = dst
        .query_one(
            "SELECT data_type FROM information_schema.columns
              WHERE table_schema = 'postgres' AND table_name = 'orders' AND column_name = 'status'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(status_type, "text", "the rule's type changes the column");

    // The snapshot rows again through CDC (ids + 100), then a changed key and a delete.
    src.batch_execute(
        "INSERT INTO orders SELECT id + 100, note, amount, status, code FROM orders;
         UPDATE orders SET id = 5, note = 'moved' WHERE id = 2;
         DELETE FROM orders WHERE id = 4;",
    )
    .await?;
    wait_same(&src, &dst, &[(EXPECTED, "postgres.orders")], Some(&running)).await?;
    let pairs = dst
        .query(
            "SELECT s.id, s::text, c::text FROM postgres.orders s
               JOIN postgres.orders c ON c.id = s.id + 100
              WHERE s.id < 1000100 ORDER BY s.id",
            &[],
        )
        .await?;
    assert_eq!(pairs.len(), 2, "rows 1 and 3 kept their CDC copies");
    for row in &pairs {
        let (id, snap, cdc): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        let strip = |t: &str| t.split_once(',').map(|(_, rest)| rest.to_string());
        assert_eq!(
            strip(&snap),
            strip(&cdc),
            "snapshot and CDC disagree on {id}"
        );
    }
    let moved: String = dst
        .query_one("SELECT note FROM postgres.orders WHERE id = 1000005", &[])
        .await?
        .get(0);
    assert_eq!(moved, ">>>>>moved<<<<<");
    running.stop().await?;
    Ok(())
}

/// The plugin's parser and evaluator tests, with `cargo test` on the host target.
#[test]
fn transform_plugin_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let target = Path::new(env!("PGMORPH_PLUGIN_CACHE"))
        .parent()
        .expect("cache dir has a parent")
        .join("plugin-unit-tests");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE" {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd
        .args(["test", "-p", "pgmorph-plugin-transform", "--manifest-path"])
        .arg(root.join("plugins").join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let passed: u32 = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<u32>().ok())
        .sum();
    assert!(passed >= 10, "the unit tests ran: {text}");
}
