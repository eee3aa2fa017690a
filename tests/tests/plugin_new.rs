//! `pgmorph plugin new` with the real binary: each language's scaffold, as written, passes its
//! own unit tests, builds into a component, passes `pgmorph plugin check` and upper-cases the
//! configured column of its sample rows under `pgmorph plugin run`.
//!
//! The Rust test builds a crate for the host and for `wasm32-wasip2` (slow the first time; its
//! target directory is kept beside the compiled-component cache). The Python and JavaScript
//! tests print `SKIPPED` with the reason and pass when the SDK's toolchain is not installed
//! (`sdk-*/install.sh --check`); `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use pgmorph_e2e::pgmorph_bin;

const CONFIG: &str = r#"{"columns": ["name"]}"#;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// Runs a command to success; returns stdout and stderr together.
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

/// `pgmorph ARGS` with the tests' compiled-component cache.
fn pgmorph(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(pgmorph_bin());
    cmd.args(args)
        .current_dir(dir)
        .env("PGMORPH_CACHE_DIR", env!("PGMORPH_PLUGIN_CACHE"))
        .env("PGMORPH_LOG", "warn");
    cmd
}

/// Scaffolds `name` in `lang` under `parent`; returns its directory.
fn scaffold(parent: &Path, name: &str, lang: &str) -> PathBuf {
    let dir = parent.join(name);
    let out = run_ok(
        pgmorph(&["plugin", "new", name, "--lang", lang, "--dir"], parent).arg(&dir),
        "pgmorph plugin new",
    );
    assert!(out.contains("README.md") && out.contains("next: "), "{out}");
    assert!(dir.join("README.md").is_file() && dir.join("rows.jsonl").is_file());
    dir
}

/// `plugin check` passes with the config, and `plugin run` on the sample rows upper-cases
/// `name` and keeps `id`.
fn check_and_run(wasm: &Path, dir: &Path) {
    let wasm = wasm.to_str().expect("UTF-8 path");
    let out = run_ok(
        &mut pgmorph(&["plugin", "check", wasm, "--plugin-config", CONFIG], dir),
        "pgmorph plugin check",
    );
    assert!(out.contains("init: ok in "), "{out}");
    let out = run_ok(
        &mut pgmorph(
            &[
                "plugin",
                "run",
                wasm,
                "--table",
                "public.users",
                "--rows",
                "rows.jsonl",
                "--plugin-config",
                CONFIG,
            ],
            dir,
        ),
        "pgmorph plugin run",
    );
    assert!(
        out.contains(r#"{"line":2,"new":{"id":"1","name":"ADA"},"result":"keep"}"#),
        "{out}"
    );
    assert!(out.contains(r#""name":"GRACE HOPPER""#), "{out}");
    assert!(out.contains("timing: 4 calls"), "{out}");
}

/// `cargo` for a crate outside the workspace: the outer cargo's variables removed, so the
/// scaffold builds as its author would build it.
fn cargo(dir: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || key == "RUSTFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.current_dir(dir).env("CARGO_TARGET_DIR", target_dir);
    cmd
}

#[test]
fn a_new_rust_plugin_tests_builds_and_passes_check() {
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold(parent.path(), "shout-case", "rust");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = std::fs::canonicalize(root().join("plugin-sdk")).unwrap();
    assert!(
        manifest.contains(&format!(
            "pgmorph-plugin-sdk = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "a path dependency on this checkout's SDK: {manifest}"
    );
    let target = Path::new(env!("PGMORPH_PLUGIN_CACHE"))
        .parent()
        .expect("cache dir has a parent")
        .join("plugin-new-target");
    let out = run_ok(cargo(&dir, &target).arg("test"), "cargo test");
    assert!(out.contains("test result: ok. 2 passed"), "{out}");
    run_ok(
        cargo(&dir, &target).args(["build", "--release", "--target", "wasm32-wasip2"]),
        "cargo build --target wasm32-wasip2",
    );
    check_and_run(&target.join("wasm32-wasip2/release/shout_case.wasm"), &dir);
}

/// Whether `sdk`'s toolchain is installed; says why not.
fn installed(sdk: &str, runtime: &str) -> bool {
    let runtime_ok = Command::new(runtime)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let tools_ok = Command::new(root().join(sdk).join("install.sh"))
        .arg("--check")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(runtime_ok && tools_ok) {
        eprintln!(
            "SKIPPED: the {sdk} toolchain is not installed (run {sdk}/install.sh; .ci/run does)"
        );
    }
    runtime_ok && tools_ok
}

/// Scaffolds a plugin in `lang`, runs its `test.sh` and `build.sh`, then checks and runs it.
fn script_plugin(lang: &str, sdk: &str, passed: &str) {
    let parent = tempfile::tempdir().unwrap();
    let dir = scaffold(parent.path(), "shout", lang);
    let out = run_ok(&mut Command::new(dir.join("test.sh")), "test.sh");
    assert!(out.contains(passed), "{out}");
    run_ok(&mut Command::new(dir.join("build.sh")), "build.sh");
    let wasm = dir.join("shout.wasm");
    assert!(wasm.is_file(), "build.sh writes shout.wasm");
    let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
    let sdk = std::fs::canonicalize(root().join(sdk)).unwrap();
    assert!(build.contains(&sdk.display().to_string()), "{build}");
    check_and_run(&wasm, &dir);
}

#[test]
fn a_new_python_plugin_tests_builds_and_passes_check() {
    if installed("sdk-python", "python3") {
        script_plugin("python", "sdk-python", "Ran 2 tests");
    }
}

#[test]
fn a_new_js_plugin_tests_builds_and_passes_check() {
    if installed("sdk-js", "node") {
        script_plugin("js", "sdk-js", "# pass 2");
    }
}
