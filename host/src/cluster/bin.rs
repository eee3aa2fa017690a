//! Locating the installed PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ClusterError;

/// Environment variable that, when set, overrides [`find_bin_dir`].
pub const BIN_DIR_ENV: &str = "PGMORPH_PG_BINDIR";

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres` and `psql`.
///
/// Order: `$PGMORPH_PG_BINDIR` (if set), then `pg_config --bindir` if that
/// directory has `initdb`, then the highest-numbered `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BinDirNotFound(format!(
                "${BIN_DIR_ENV}={} has no initdb",
                dir.display()
            )))
        };
    }
    if let Some(dir) = pg_config_bindir() {
        if has_initdb(&dir) {
            return Ok(dir);
        }
    }
    highest_debian_bindir(Path::new("/usr/lib/postgresql")).ok_or_else(|| {
        ClusterError::BinDirNotFound(
            "neither `pg_config --bindir` nor /usr/lib/postgresql/*/bin has initdb".into(),
        )
    })
}

fn has_initdb(dir: &Path) -> bool {
    dir.join("initdb").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Picks `<root>/<highest version>/bin` among versions that have `initdb`.
fn highest_debian_bindir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// Parses "15" or "9.6" into a sortable key.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_numerically() {
        assert!(version_key("10").unwrap() > version_key("9.6").unwrap());
        assert!(version_key("15").unwrap() > version_key("9").unwrap());
        assert_eq!(version_key("main"), None);
    }
}
