//! Hot reload: plugins and config change under live traffic; every source transaction is
//! handled by exactly one chain version, nothing is lost, and a broken version never replaces a
//! working one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmorph::pipeline::{Mode, ReloadOptions};
use pgmorph::plugin::reload::{build_transform, Fingerprint};
use pgmorph_e2e::{digest, wait_streaming, wait_until, Pair, Running};

fn built(name: &str) -> PathBuf {
    Path::new(env!("PGMORPH_PLUGIN_DIR")).join(format!("pgmorph_plugin_{name}.wasm"))
}

/// Replaces `to` atomically (write elsewhere, then rename), as deploy tools do.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn start(path: &Path) -> anyhow::Result<Running> {
    start_after(path, |_| {})
}

/// Starts a connector as the binary does: the files are fingerprinted, then the chain is built;
/// `meanwhile` runs between building the chain and starting the connector.
fn start_after(path: &Path, meanwhile: impl FnOnce(Option<&Path>)) -> anyhow::Result<Running> {
    let config = pgmorph::config::Config::load(path)?;
    let loaded = Fingerprint::of_config(&config, None, Some(path));
    let transform = build_transform(&config, None)?;
    meanwhile(config.plugin_dir.as_deref());
    Ok(Running::start_full(
        &config,
        Mode::Initial,
        transform,
        Some(ReloadOptions {
            config_path: Some(path.to_path_buf()),
            dir_override: None,
            watch: true,
            loaded: Some(loaded),
        }),
    ))
}

/// Creates a plugin directory holding `installed` (built plugin, file name) and the config
/// of connector `name` replicating `public.items` through it. Returns the plugin directory and
/// the config file.
fn with_plugins(
    pair: &Pair,
    name: &str,
    installed: &[(&str, &str)],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    for (plugin, file) in installed {
        install(&built(plugin), &plugins.join(file));
    }
    let top = format!("plugin_dir = \"{}\"", plugins.display());
    let (path, _) = pair.config(name, &top, "tables = [\"public.items\"]")?;
    Ok((plugins, path))
}

const SCHEMA: &str =
    "CREATE TABLE items (id bigserial PRIMARY KEY, grp int NOT NULL, payload text)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_plugin_versions_under_load_keeps_transactions_whole() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (plugins, path) = with_plugins(&pair, "hot", &[("stamp", "20-stamp.wasm")])?;
    let slot = plugins.join("20-stamp.wasm");
    let running = start(&path)?;
    wait_streaming(&dst, "hot", Some(&running)).await?;

    let url = pair.source.url("postgres");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut g = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || g < 500 {
                client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO items (grp, payload) VALUES ({g}, 'a'), ({g}, 'b'), ({g}, 'c'); COMMIT;"
                    ))
                    .await?;
                g += 1;
            }
            anyhow::Ok(g)
        })
    };
    for (i, version) in ["stamp_v2", "stamp", "stamp_v2", "stamp"]
        .iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if i == 2 {
            // A file written in two steps loads once, complete.
            let bytes = std::fs::read(built(version))?;
            let (a, b) = bytes.split_at(bytes.len() / 2);
            std::fs::write(&slot, a)?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&slot)?
                .write_all(b)?;
        } else {
            install(&built(version), &slot);
        }
        // The new version serves traffic while the writer keeps going.
        wait_until(
            &dst,
            &format!(
                "SELECT reloads >= {} FROM pgmorph.plugins WHERE connector = 'hot' AND plugin = '20-stamp'",
                i + 1
            ),
            Some(&running),
        )
        .await?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let transactions = writer.await??;
    assert!(transactions >= 500);
    let expected = digest(&src, "items").await?;
    let projected = "(SELECT id, grp, payload FROM postgres.items)";
    let mut waited = 0;
    while digest(&dst, projected).await? != expected {
        anyhow::ensure!(
            waited < 600 && !running.is_finished(),
            "destination did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let mixed: i64 = dst
        .query_one(
            "SELECT count(*) FROM (SELECT grp FROM postgres.items GROUP BY grp \
             HAVING count(DISTINCT coalesce(stamped_by, 'none')) > 1) x",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(
        mixed, 0,
        "a source transaction was split between chain versions"
    );
    let versions: i64 = dst
        .query_one("SELECT count(DISTINCT stamped_by) FROM postgres.items", &[])
        .await?
        .get(0);
    assert_eq!(versions, 2, "both versions served traffic");
    let reloads: i32 = dst
        .query_one(
            "SELECT reloads FROM pgmorph.plugins WHERE connector = 'hot' AND plugin = '20-stamp'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(reloads, 4, "each change loaded once");
    let failed: i32 = dst
        .query_one("SELECT failed_reloads FROM pgmorph.plugins WHERE connector = 'hot' AND plugin = '20-stamp'", &[])
        .await?
        .get(0);
    assert_eq!(failed, 0, "the half-written file was never loaded");
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_changed_before_streaming_starts_is_loaded_once_streaming() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (0, 'snapshot')")
        .await?;
    let (_, path) = with_plugins(&pair, "early", &[("stamp", "20-stamp.wasm")])?;
    // The new version lands after the chain was built and before any watcher exists, as when a
    // plugin is deployed during a long snapshot.
    let running = start_after(&path, |dir| {
        let dir = dir.expect("plugin_dir is set");
        install(&built("stamp_v2"), &dir.join("20-stamp.wasm"))
    })?;
    wait_until(
        &dst,
        "SELECT reloads >= 1 FROM pgmorph.plugins WHERE connector = 'early' AND plugin = '20-stamp'",
        Some(&running),
    )
    .await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (1, 'streamed')")
        .await?;
    wait_until(
        &dst,
        "SELECT stamped_by = 'v2' FROM postgres.items WHERE grp = 1",
        Some(&running),
    )
    .await?;
    let snapshot: String = dst
        .query_one("SELECT stamped_by FROM postgres.items WHERE grp = 0", &[])
        .await?
        .get(0);
    assert_eq!(
        snapshot, "v1",
        "the snapshot ran with the chain built at start"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_refused_and_mapping_changes_reach_the_destination(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (0, 'before')")
        .await?;
    let (plugins, path) = with_plugins(&pair, "hot2", &[("rename", "10-rename.wasm")])?;
    let running = start(&path)?;
    wait_streaming(&dst, "hot2", Some(&running)).await?;

    // A truncated plugin is refused; replication goes on with the old chain.
    let bytes = std::fs::read(built("stamp"))?;
    std::fs::write(plugins.join("20-stamp.wasm"), &bytes[..bytes.len() / 3])?;
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM pgmorph.plugins WHERE connector = 'hot2' AND plugin = '20-stamp' \
         AND failed_reloads >= 1 AND last_error LIKE '%20-stamp%')",
        Some(&running),
    )
    .await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (1, 'during broken')")
        .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 2 FROM postgres.items",
        Some(&running),
    )
    .await?;

    // The fixed file adds a computed column: the destination table gains it.
    install(&built("stamp"), &plugins.join("20-stamp.wasm"));
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'postgres' \
         AND table_name = 'items' AND column_name = 'stamped_by')",
        Some(&running),
    )
    .await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (2, 'stamped')")
        .await?;
    wait_until(
        &dst,
        "SELECT stamped_by = 'v1' FROM postgres.items WHERE grp = 2",
        Some(&running),
    )
    .await?;

    // A config-only change renames a column in place.
    let text = std::fs::read_to_string(&path)?
        + "\n[plugins.10-rename.config]\ncolumns = { \"public.items.payload\" = \"body\" }\n";
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    wait_until(
        &dst,
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'postgres' \
         AND table_name = 'items' AND column_name = 'body')",
        Some(&running),
    )
    .await?;
    src.batch_execute("INSERT INTO items (grp, payload) VALUES (3, 'renamed')")
        .await?;
    wait_until(
        &dst,
        "SELECT body = 'renamed' FROM postgres.items WHERE grp = 3",
        Some(&running),
    )
    .await?;
    let kept: i64 = dst
        .query_one("SELECT count(*) FROM postgres.items", &[])
        .await?
        .get(0);
    assert_eq!(kept, 4);
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_the_config_while_running_is_copied_alone() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute(
        "CREATE TABLE extra (grp int, note text); ALTER TABLE extra REPLICA IDENTITY FULL;
         INSERT INTO extra SELECT g, 'old' FROM generate_series(1, 1000) g;",
    )
    .await?;
    let (path, _) = pair.config("grow", "", "tables = [\"public.items\"]")?;
    let running = start(&path)?;
    wait_streaming(&dst, "grow", Some(&running)).await?;

    let url = pair.source.url("postgres");
    let writer = tokio::spawn(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        for g in 0..600 {
            client
                .batch_execute(&format!(
                    "BEGIN; INSERT INTO items (grp, payload) VALUES ({g}, 'x');
                     INSERT INTO extra VALUES ({g}, 'new'); COMMIT;"
                ))
                .await?;
        }
        anyhow::Ok(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&path)?.replace(
        "tables = [\"public.items\"]",
        "tables = [\"public.items\", \"public.extra\"]",
    );
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    writer.await??;
    pgmorph_e2e::wait_same(
        &src,
        &dst,
        &[
            ("public.items", "postgres.items"),
            ("public.extra", "postgres.extra"),
        ],
        Some(&running),
    )
    .await?;
    // The rows can match a moment before the copy is recorded as finished.
    pgmorph_e2e::wait_until(
        &dst,
        "SELECT phase = 'streaming' FROM pgmorph.tables WHERE source_table = 'public.extra'",
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}
