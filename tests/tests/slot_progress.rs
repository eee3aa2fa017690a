//! The slot's confirmed position keeps advancing when nothing reaches the destination: rows a
//! plugin filters out, and writes to tables outside the publication. Otherwise the source would
//! keep WAL for pgmorph forever.

mod plugin_support;

use pgmorph::pipeline::Mode;
use pgmorph::plugin::PluginChain;
use pgmorph_e2e::{wait_streaming, wait_until, Pair, Running};

const SCHEMA: &str = "
CREATE TABLE kept (id int PRIMARY KEY, status text);
CREATE TABLE other (id int PRIMARY KEY, v text);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_advances_when_every_change_is_filtered_out() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config(
        "slotprog",
        "",
        "schema = \"public\"\ntables = [\"public.kept\"]",
    )?;
    let (dir, plugins) = plugin_support::plugin_dir(&[(
        "10-filter",
        "filter",
        r#"config = { skip_rows = [{ table = "public.kept", column = "status", equals = "drop" }] }"#,
    )]);
    let chain = PluginChain::load_with(dir.path(), &plugins.plugins, &plugin_support::options())?;
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    wait_streaming(&dst, "slotprog", Some(&running)).await?;
    src.batch_execute("INSERT INTO kept VALUES (1, 'keep')")
        .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 1 FROM postgres.kept",
        Some(&running),
    )
    .await?;
    let slot_at = |lsn: &str| {
        format!(
            "SELECT confirmed_flush_lsn >= '{lsn}' FROM pg_replication_slots \
             WHERE slot_name = 'pgmorph_slotprog'"
        )
    };

    // Only rows the plugin drops: every transaction is empty once filtered.
    for i in 0..50 {
        src.batch_execute(&format!("INSERT INTO kept VALUES ({}, 'drop')", i + 10))
            .await?;
    }
    let after_filtered: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    wait_until(&src, &slot_at(&after_filtered), Some(&running)).await?;

    // Only writes to a table outside the publication: the stream sends nothing but keepalives.
    for i in 0..50 {
        src.batch_execute(&format!("INSERT INTO other VALUES ({i}, 'x')"))
            .await?;
    }
    let after_other: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    wait_until(&src, &slot_at(&after_other), Some(&running)).await?;

    let kept: i64 = dst
        .query_one("SELECT count(*) FROM postgres.kept", &[])
        .await?
        .get(0);
    assert_eq!(kept, 1, "filtered rows reached the destination");
    running.stop().await?;
    Ok(())
}
