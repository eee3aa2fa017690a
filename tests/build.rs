//! Builds the example plugins in `../plugins` for `wasm32-wasip2` (once, and again only when
//! `plugins/`, `plugin-sdk/`, `wire/` or `wit/` change) and tells the tests where the `.wasm`
//! files are: `env!("PGMORPH_PLUGIN_DIR")`, with a compiled-component cache at
//! `env!("PGMORPH_PLUGIN_CACHE")`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf();
    for watched in ["plugins", "plugin-sdk", "wire", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target_root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // A target directory of its own: the outer build holds the lock of the main one.
    let target_dir = target_root.join("wasm-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(root.join("plugins").join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || [
                "RUSTFLAGS",
                "RUSTC_WORKSPACE_WRAPPER",
                "MAKEFLAGS",
                "MFLAGS",
                "DEBUG",
                "OPT_LEVEL",
                "PROFILE",
                "TARGET",
                "HOST",
                "OUT_DIR",
                "NUM_JOBS",
            ]
            .contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let output = cmd.output().expect("cannot run cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=PGMORPH_PLUGIN_DIR={}", wasm_dir.display());
    println!(
        "cargo:rustc-env=PGMORPH_PLUGIN_CACHE={}",
        target_dir.join("cwasm-cache").display()
    );
}
