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

/// A slot the source invalidated (it kept more WAL than `max_slot_wal_keep_size`) stops the
/// start with the cause and the recovery; the recovery (`--mode always`) creates the slot
/// again and copies every table, and the destination ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_is_named_and_the_recovery_copies_again() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute("INSERT INTO kept SELECT g, 'a' FROM generate_series(1, 100) g")
        .await?;
    let (_, config) = pair.config(
        "lostslot",
        "",
        "schema = \"public\"\ntables = [\"public.kept\"]",
    )?;
    let running = pgmorph_e2e::Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "lostslot", Some(&running)).await?;
    running.stop().await?;

    // While stopped: the source keeps at most 1 MB for slots, and writes far more.
    for sql in [
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
        "SELECT pg_reload_conf()",
        "UPDATE kept SET status = 'b' WHERE id <= 50",
    ] {
        src.batch_execute(sql).await?;
    }
    for _ in 0..3 {
        for sql in [
            "INSERT INTO other SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g \
             ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v || 'y'",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ] {
            src.batch_execute(sql).await?;
        }
    }
    wait_until(
        &src,
        "SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = 'pgmorph_lostslot'",
        None,
    )
    .await?;
    let err = pgmorph_e2e::Running::start(&config, Mode::Initial)
        .join()
        .await
        .expect_err("streamed from an invalidated slot");
    let text = err.to_string();
    assert!(
        text.contains("was invalidated") && text.contains("--mode always"),
        "{text}"
    );
    assert_eq!(err.kind(), pgmorph::error_kind::ErrorKind::FixServer);

    let running = pgmorph_e2e::Running::start(&config, Mode::Always);
    wait_streaming(&dst, "lostslot", Some(&running)).await?;
    src.batch_execute("INSERT INTO kept VALUES (1000, 'after')")
        .await?;
    pgmorph_e2e::wait_same(
        &src,
        &dst,
        &[("public.kept", "postgres.kept")],
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}
