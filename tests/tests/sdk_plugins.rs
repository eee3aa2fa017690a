//! The Python and JavaScript plugin SDKs end to end. Each SDK's `mask` example is built into a
//! component by the SDK's own build script and replicates a table between two real PostgreSQL
//! servers, through the snapshot and CDC, with rows holding 8 MiB values, under the default
//! memory cap: the destination must hold exactly the rows the plugin has to produce, computed by
//! SQL on the source (`sha256` of salt, a zero byte and the value; `REDACTED`). The SDKs' unit
//! tests (their codecs against the bytes in `wire/fixtures/`, the mapping builder, typed rows,
//! native test hosts) run here too.
//!
//! A test whose toolchain is not installed (`sdk-*/install.sh --check`, or no `python3` /
//! `node`) prints `SKIPPED` with the reason and passes; `.ci/run` installs the toolchains, so CI
//! runs them all.

mod plugin_support;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pgmorph::pipeline::Mode;
use pgmorph::plugin::PluginChain;
use pgmorph_e2e::{wait_same, wait_streaming, Pair, Running};

const PYTHON: &str = "sdk-python";
const JS: &str = "sdk-js";

/// The largest value the SDK examples must handle under the default memory cap.
const BIG: usize = 8 << 20;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn skipped(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn has_command(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command to success, failing with its output.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Hashes every file under `dirs` (paths and contents), leaving out caches.
fn inputs_hash(dirs: &[PathBuf]) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "__pycache__" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for d in dirs {
        walk(d, &mut files);
    }
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        h.write(f.to_string_lossy().as_bytes());
        h.write(&std::fs::read(&f).unwrap_or_default());
    }
    h.finish()
}

/// The SDK's `mask` example as a component, built by `<sdk>/build.sh` (again only when the SDK,
/// the example or the WIT changed); `None`, said why, when the SDK's toolchain is not installed.
fn example_wasm(sdk: &str) -> Option<PathBuf> {
    let dir = root().join(sdk);
    let installed = Command::new(dir.join("install.sh"))
        .arg("--check")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        skipped(&format!(
            "the {sdk} toolchain is not installed (run {sdk}/install.sh; .ci/run does)"
        ));
        return None;
    }
    let key = inputs_hash(&[dir.clone(), root().join("wit")]);
    let out_dir = Path::new(env!("PGMORPH_PLUGIN_CACHE"))
        .parent()
        .expect("cache dir has a parent")
        .join("sdk-examples");
    let wasm = out_dir.join(format!("{sdk}-mask-{key:016x}.wasm"));
    if !wasm.exists() {
        std::fs::create_dir_all(&out_dir).unwrap();
        let partial = out_dir.join(format!("{sdk}-mask.{}.partial", std::process::id()));
        let started = Instant::now();
        run_ok(
            Command::new(dir.join("build.sh"))
                .arg(dir.join("examples").join("mask"))
                .arg(&partial),
            &format!("{sdk}/build.sh"),
        );
        eprintln!("built the {sdk} example in {:?}", started.elapsed());
        std::fs::rename(&partial, &wasm).unwrap();
    }
    Some(wasm)
}

#[test]
fn python_sdk_unit_tests() {
    if !has_command("python3") {
        return skipped("python3 is not installed");
    }
    let sdk = root().join(PYTHON);
    for dir in [sdk.join("tests"), sdk.join("examples").join("mask")] {
        let out = run_ok(
            Command::new("python3")
                .args(["-m", "unittest", "discover", "-v", "-s"])
                .arg(&dir)
                .current_dir(&dir)
                .env("PYTHONPATH", &sdk)
                .env("PYTHONDONTWRITEBYTECODE", "1"),
            &format!("python3 -m unittest in {}", dir.display()),
        );
        assert!(
            out.contains("\nOK"),
            "no tests ran in {}:\n{out}",
            dir.display()
        );
    }
}

#[test]
fn js_sdk_unit_tests() {
    if !has_command("node") {
        return skipped("node is not installed");
    }
    let out = run_ok(
        Command::new("node")
            .arg("--test")
            .current_dir(root().join(JS)),
        "node --test in sdk-js",
    );
    assert!(out.contains("# fail 0"), "{out}");
    assert!(!out.contains("# pass 0"), "no tests ran:\n{out}");
}

const SCHEMA: &str = "
CREATE TABLE users (id int PRIMARY KEY, email text, ssn text, age int, note text);
INSERT INTO users VALUES
    (1, 'a@example.com', '123-45', 42, 'plain'),
    (2, NULL, NULL, NULL, NULL),
    (3, 'żółw@example.com', '', 7, 'ünïcode');
";

/// What the destination must hold: the source rows as the mask config below masks them.
const EXPECTED: &str = r"(SELECT id,
        encode(sha256(convert_to('pepper', 'UTF8') || '\x00'::bytea || convert_to(email, 'UTF8')), 'hex') AS email,
        CASE WHEN ssn IS NULL THEN NULL ELSE 'REDACTED' END AS ssn,
        CASE WHEN age IS NULL THEN NULL ELSE 'REDACTED' END AS age,
        note
   FROM public.users)";

const MASK_CONFIG: &str =
    r#"config = { salt = "pepper", hash = ["*.email"], redact = ["public.users.ssn", "*.age"] }"#;

/// Replicates `users` through the SDK's `mask` example, under the default memory cap and
/// deadline, and compares the destination with [`EXPECTED`] after the snapshot and after CDC.
///
/// `email_len` is the length of the big rows' hashed e-mails: JavaScript hashes an 8 MiB value in
/// about 30 s (SHA-256 in interpreted JavaScript), far over the 1 s deadline, so its big rows
/// carry their 8 MiB values in the redacted and the unmasked columns only.
async fn replicates_through_the_example(sdk: &str, email_len: i32) -> anyhow::Result<()> {
    let Some(wasm) = example_wasm(sdk) else {
        return Ok(());
    };
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    // A row with 8 MiB values in the redacted and the unmasked text column, and an e-mail of
    // `email_len` bytes.
    src.execute(
        "INSERT INTO users VALUES (4, repeat('e', $2), repeat('s', $1), 1, repeat('n', $1))",
        &[&(BIG as i32), &email_len],
    )
    .await?;
    let plugins = pair.dir.path().join("plugins");
    std::fs::create_dir(&plugins)?;
    std::fs::copy(&wasm, plugins.join("30-mask.wasm"))?;
    let name = sdk.replace('-', "_");
    let top = format!("[plugins.30-mask]\n{MASK_CONFIG}\n");
    let (_, config) = pair.config(&name, &top, "schema = \"public\"")?;
    let loaded = Instant::now();
    let chain = PluginChain::load_with(&plugins, &config.plugins, &plugin_support::options())?;
    eprintln!("{sdk}: plugin loaded in {:?}", loaded.elapsed());

    let started = Instant::now();
    let running = Running::start_with(&config, Mode::Initial, Box::new(chain));
    wait_streaming(&dst, &name, Some(&running)).await?;
    wait_same(&src, &dst, &[(EXPECTED, "postgres.users")], Some(&running)).await?;
    eprintln!("{sdk}: snapshot matched in {:?}", started.elapsed());

    src.execute(
        "INSERT INTO users VALUES (5, 'b@example.com', '9', 30, 'cdc'),
                                  (6, repeat('f', $2), repeat('t', $1), 2, 'big, through CDC')",
        &[&(BIG as i32), &email_len],
    )
    .await?;
    src.batch_execute(
        "UPDATE users SET age = age + 1 WHERE id = 4;          -- the big values stay unchanged TOAST
         UPDATE users SET email = 'c@example.com', ssn = NULL WHERE id = 1;
         DELETE FROM users WHERE id = 2;",
    )
    .await?;
    let cdc = Instant::now();
    wait_same(&src, &dst, &[(EXPECTED, "postgres.users")], Some(&running)).await?;
    eprintln!("{sdk}: CDC matched in {:?}", cdc.elapsed());
    let big: Vec<(i32, i32, String, String, i32)> = dst
        .query(
            "SELECT id, length(email), ssn, age, length(note) FROM postgres.users
              WHERE id IN (4, 6) ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let redacted = || "REDACTED".to_string();
    // The e-mails are hashed, the 8 MiB ssns redacted, the masked int became text and
    // the unmasked 8 MiB note is kept.
    assert_eq!(
        big,
        [
            (4, 64, redacted(), redacted(), BIG as i32),
            (6, 64, redacted(), redacted(), 16)
        ]
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_mask_replicates_with_8_mib_values() -> anyhow::Result<()> {
    replicates_through_the_example(PYTHON, BIG as i32).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_mask_replicates_with_8_mib_values() -> anyhow::Result<()> {
    replicates_through_the_example(JS, 16).await
}

/// Loads `wasm` as plugin `30-mask` with the given `[plugins.30-mask]` settings.
fn load_mask(wasm: &Path, settings: &str) -> (tempfile::TempDir, PluginChain) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(wasm, dir.path().join("30-mask.wasm")).unwrap();
    let text = format!(
        "name = \"t\"\n[source]\nurl = \"postgres://u@127.0.0.1:1/s\"\n[destination]\nurl = \"postgres://u@127.0.0.1:2/d\"\n[plugins.30-mask]\n{settings}\n"
    );
    let config = pgmorph::config::Config::parse(&text, Path::new("t.toml")).unwrap();
    let chain =
        PluginChain::load_with(dir.path(), &config.plugins, &plugin_support::options()).unwrap();
    (dir, chain)
}

/// Runs `batch` (orders rows by id, each e-mail of the given length) through the chain;
/// returns the seconds it took, or the plugin's error.
fn run_batch(
    chain: &mut PluginChain,
    ids: std::ops::Range<i64>,
    email_len: usize,
) -> Result<f64, String> {
    use pgmorph::model::Cell;
    use pgmorph::transform::Transform;
    let table = plugin_support::orders(1, "orders");
    let mapping = chain.map_table(table, "public").map_err(|e| e.message)?;
    let mut batch: Vec<_> = ids
        .map(|id| {
            let mut row = plugin_support::order(id, "paid");
            if email_len > 0 {
                row[2] = Cell::text("e".repeat(email_len));
            }
            plugin_support::insert(mapping.project(row))
        })
        .collect();
    let started = Instant::now();
    let outcome = chain
        .transform_rows(&mapping, &mut batch)
        .map_err(|e| e.message)?;
    let took = started.elapsed().as_secs_f64();
    match outcome.dead_letters.first() {
        Some(dead) => Err(dead.error.clone()),
        None => Ok(took),
    }
}

/// The per-call cost of each language's `mask` (hashing one column of the `orders` rows) and the
/// memory cap an 8 MiB value needs: `cargo nextest run -p pgmorph-e2e --test sdk_plugins
/// sdk_plugin_cost --run-ignored only --no-capture`.
#[test]
#[ignore = "measurement: run with --run-ignored only --no-capture"]
fn sdk_plugin_cost() {
    let mut wasms = vec![("rust", plugin_support::wasm("mask"))];
    wasms.extend(example_wasm(PYTHON).map(|w| ("python", w)));
    wasms.extend(example_wasm(JS).map(|w| ("javascript", w)));
    let mask = r#"on_error = "dead_letter"
config = { salt = "s", hash = ["*.email"] }"#;
    for (lang, wasm) in &wasms {
        let size = std::fs::metadata(wasm).unwrap().len();
        let (_dir, mut chain) = load_mask(wasm, mask);
        run_batch(&mut chain, 0..100, 0).unwrap();
        let calls = 2000;
        let one: f64 = (0..calls)
            .map(|i| run_batch(&mut chain, i..i + 1, 0).unwrap())
            .sum();
        let rows = 1000;
        let many = (0..5)
            .map(|_| run_batch(&mut chain, 0..rows, 0).unwrap())
            .fold(f64::MAX, f64::min);
        println!(
            "{lang:<10} {:>5.1} MB  one-row call {:>6.1} µs  1000-row batch {:>7.2} µs/row",
            size as f64 / 1e6,
            one * 1e6 / calls as f64,
            many * 1e6 / rows as f64,
        );
        // Hashing an 8 MiB value, without the default deadline.
        let (_dir, mut chain) = load_mask(
            wasm,
            &format!("{mask}\nmemory_mb = 256\ntimeout_ms = 60000"),
        );
        let big = run_batch(&mut chain, 0..1, BIG);
        println!(
            "{lang:<10} hashing one 8 MiB e-mail: {}",
            big.map_or_else(|e| e, |s| format!("{:.0} ms", s * 1e3))
        );
        // The memory an 8 MiB value needs: redacted, so only its way in and out counts.
        let redact = r#"on_error = "dead_letter"
config = { redact = ["*.email"] }"#;
        for (label, rows, len) in [("one 8 MiB value", 1, BIG), ("a 16 MiB batch", 2, BIG)] {
            let smallest = [16u64, 24, 32, 40, 48, 56, 64, 80, 96, 128, 192, 256]
                .into_iter()
                .find(|mb| {
                    let settings = format!("{redact}\nmemory_mb = {mb}\ntimeout_ms = 10000");
                    let (_dir, mut chain) = load_mask(wasm, &settings);
                    run_batch(&mut chain, 0..rows, len).is_ok()
                });
            println!("{lang:<10} smallest memory_mb for {label}: {smallest:?}");
        }
    }
}
