//! Plugins in a parallel snapshot: every copy worker runs its own instances of the chain, the
//! rows arrive transformed as one instance would have done, and a chain reloaded while
//! streaming reaches later rows and the workers of a later copy.

mod plugin_support;

use std::path::{Path, PathBuf};

use pgmorph::model::TableMapping;
use pgmorph::pipeline::{Mode, ReloadOptions};
use pgmorph::plugin::reload::{build_transform, Fingerprint};
use pgmorph::state::control::{self, Request};
use pgmorph::transform::Transform;
use pgmorph_e2e::{digest, wait_streaming, wait_until, Pair, Running};
use plugin_support::{chain, insert, order, orders, text};
use tokio_postgres::Client;

fn built(name: &str) -> PathBuf {
    Path::new(env!("PGMORPH_PLUGIN_DIR")).join(format!("pgmorph_plugin_{name}.wasm"))
}

/// Replaces `to` atomically (write elsewhere, then rename).
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// `items` spans several hundred pages, so four workers copy it as four page ranges.
const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, payload text);
INSERT INTO items SELECT g, g % 13, repeat('p', 100) || g FROM generate_series(1, 30000) g;";

/// The destination rows as the source has them (the computed columns left out).
const PROJECTED: &str = "(SELECT id, grp, payload FROM postgres.items)";

async fn int(client: &Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Starts connector `name` with `tally` then `stamp` (v1) in a watched plugin directory, the
/// snapshot split into four page ranges on four workers.
fn start(pair: &Pair, name: &str) -> anyhow::Result<(PathBuf, Running)> {
    start_with(pair, name, "")
}

/// [`start`] with `more` config after the `[snapshot]` section.
fn start_with(pair: &Pair, name: &str, more: &str) -> anyhow::Result<(PathBuf, Running)> {
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    install(&built("tally"), &plugins.join("10-tally.wasm"));
    install(&built("stamp"), &plugins.join("20-stamp.wasm"));
    let top = format!(
        "plugin_dir = \"{}\"\n[snapshot]\nparallel = 4\nrange_min_mb = 0\n{more}",
        plugins.display()
    );
    let (path, config) = pair.config(name, &top, "tables = [\"public.items\"]")?;
    let loaded = Fingerprint::of_config(&config, None, Some(&path));
    let transform = build_transform(&config, None)?;
    let running = Running::start_full(
        &config,
        Mode::Initial,
        transform,
        Some(ReloadOptions {
            config_path: Some(path),
            dir_override: None,
            watch: true,
            loaded: Some(loaded),
        }),
    );
    Ok((plugins, running))
}

/// Checks the `tally` column of the rows `filter` selects: each instance numbers the rows it
/// handled 1, 2, 3, ..., so there are as many rows numbered 1 as instances that handled rows,
/// and never more rows numbered `n + 1` than `n`. Returns that number of instances.
async fn instances(dst: &Client, filter: &str) -> anyhow::Result<i64> {
    let rows = int(
        dst,
        &format!("SELECT count(*) FROM postgres.items WHERE {filter}"),
    )
    .await?;
    let first = int(
        dst,
        &format!("SELECT count(*) FROM postgres.items WHERE {filter} AND tally = 1"),
    )
    .await?;
    let broken = int(
        dst,
        &format!(
            "SELECT count(*) FROM (SELECT tally, count(*) AS n, lag(count(*)) OVER (ORDER BY tally) AS before \
             FROM postgres.items WHERE {filter} GROUP BY tally) t \
             WHERE n > before OR (before IS NULL AND tally <> 1)"
        ),
    )
    .await?;
    assert_eq!(broken, 0, "tally numbers are not one run 1..n per instance");
    let most = int(
        dst,
        &format!("SELECT max(tally) FROM postgres.items WHERE {filter}"),
    )
    .await?;
    assert!(
        most < rows,
        "one instance handled all {rows} rows ({filter}): the workers shared it"
    );
    Ok(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_snapshot_worker_runs_its_own_plugin_instances_and_reloads_reach_them(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (plugins, running) = start(&pair, "workers")?;
    wait_streaming(&dst, "workers", Some(&running)).await?;

    assert_eq!(digest(&dst, PROJECTED).await?, digest(&src, "items").await?);
    let v1 = int(
        &dst,
        "SELECT count(*) FROM postgres.items WHERE stamped_by = 'v1'",
    )
    .await?;
    assert_eq!(v1, 30000, "every copied row went through the whole chain");
    let copied_by = instances(&dst, "true").await?;
    assert!(copied_by >= 2, "{copied_by} instance(s) copied the rows");

    // A new version while streaming: later changes go through it.
    install(&built("stamp_v2"), &plugins.join("20-stamp.wasm"));
    wait_until(
        &dst,
        "SELECT reloads >= 1 FROM pgmorph.plugins WHERE connector = 'workers' AND plugin = '20-stamp'",
        Some(&running),
    )
    .await?;
    src.batch_execute(
        "INSERT INTO items SELECT g, 0, 'streamed' FROM generate_series(30001, 30100) g",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 100 AND bool_and(stamped_by = 'v2') FROM postgres.items WHERE payload = 'streamed'",
        Some(&running),
    )
    .await?;

    // A copy after the reload: every worker's instances are of the new version.
    control::mark_for_resync(&dst, "workers", "public.items").await?;
    control::request(&dst, "workers", Request::Resync).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 30100 AND bool_and(stamped_by = 'v2') FROM postgres.items",
        Some(&running),
    )
    .await?;
    wait_streaming(&dst, "workers", Some(&running)).await?;
    assert_eq!(digest(&dst, PROJECTED).await?, digest(&src, "items").await?);
    let recopied_by = instances(&dst, "true").await?;
    assert!(
        recopied_by >= 2,
        "{recopied_by} instance(s) copied the rows again"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_cdc_steps_run_on_the_instances_of_each_apply_connection() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, running) = start_with(&pair, "cdcworkers", "[apply]\nparallel = 3")?;
    wait_streaming(&dst, "cdcworkers", Some(&running)).await?;
    src.batch_execute(
        "INSERT INTO items SELECT g, g % 13, 'cdc' FROM generate_series(30001, 33000) g;
         UPDATE items SET payload = 'cdc' WHERE id % 10 = 0 AND id <= 30000;",
    )
    .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 6000 AND bool_and(stamped_by = 'v1') FROM postgres.items WHERE payload = 'cdc'",
        Some(&running),
    )
    .await?;
    assert_eq!(digest(&dst, PROJECTED).await?, digest(&src, "items").await?);
    // Each instance took consecutive rows of a step, in source order: along the ids, a tally
    // goes up by one except where a part (or a step) starts.
    let inserted = "payload = 'cdc' AND id > 30000";
    let by = instances(&dst, inserted).await?;
    assert!(
        by >= 2,
        "{by} instance(s) ran the row step of 3,000 inserts"
    );
    let starts = int(
        &dst,
        &format!(
            "SELECT count(*) FROM (SELECT tally::int - lag(tally::int) OVER (ORDER BY id) AS d \
             FROM postgres.items WHERE {inserted}) t WHERE d IS DISTINCT FROM 1"
        ),
    )
    .await?;
    assert!(
        (by..=30).contains(&starts),
        "{starts} runs of consecutive rows for {by} instances"
    );
    running.stop().await?;
    Ok(())
}

/// The `tally` values `transform` gives `n` new rows.
fn tallies(transform: &mut dyn Transform, mapping: &TableMapping, n: i64) -> Vec<String> {
    let at = mapping
        .columns
        .iter()
        .position(|c| c.name == "tally")
        .expect("tally adds its column");
    let mut batch: Vec<_> = (1..=n)
        .map(|id| insert(mapping.project(order(id, "paid"))))
        .collect();
    transform.transform_rows(mapping, &mut batch).unwrap();
    batch
        .iter()
        .map(|c| text(&c.new.as_ref().unwrap()[at]).unwrap().to_string())
        .collect()
}

#[test]
fn a_fork_runs_instances_of_its_own_and_follows_the_generation() {
    let mut shared = chain(&[("10-tally", "tally", "")]).unwrap();
    let loaded = shared.generation();
    let mapping = shared.map_table(orders(1, "orders"), "dst").unwrap();
    assert_ne!(
        shared.generation(),
        loaded,
        "a mapping moves the generation on"
    );
    assert_eq!(tallies(&mut shared, &mapping, 2), ["1", "2"]);

    let mut fork = shared.fork().unwrap().expect("a plugin chain forks");
    assert_eq!(fork.generation(), shared.generation());
    assert_eq!(
        tallies(fork.as_mut(), &mapping, 3),
        ["1", "2", "3"],
        "a fork's instance counts on its own"
    );
    assert_eq!(
        tallies(&mut shared, &mapping, 1),
        ["3"],
        "and leaves the shared one alone"
    );

    let reloaded = chain(&[("10-tally", "tally", "")]).unwrap();
    assert!(
        ![loaded, shared.generation()].contains(&reloaded.generation()),
        "a new chain never repeats a generation"
    );
    shared.map_table(orders(1, "orders"), "dst").unwrap();
    assert_ne!(
        shared.generation(),
        fork.generation(),
        "a fork goes stale when the shared chain maps again"
    );
}
