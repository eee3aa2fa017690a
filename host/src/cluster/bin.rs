//! Locating the PostgreSQL server binaries: an explicit directory, the installed packages, or
//! the cache that `scripts/pg-versions` fills from the npm registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ClusterError;

/// Environment variable that, when set, overrides [`find_bin_dir`].
pub const BIN_DIR_ENV: &str = "PGMORPH_PG_BINDIR";
/// Environment variable naming the bin directory of source servers only (a cross-version pair).
pub const SOURCE_BIN_DIR_ENV: &str = "PGMORPH_SOURCE_PG_BINDIR";
/// Environment variable naming the bin directory of destination servers only.
pub const DEST_BIN_DIR_ENV: &str = "PGMORPH_DEST_PG_BINDIR";
/// Environment variable naming the cache of fetched binaries (`<cache>/<major>/bin`).
pub const CACHE_ENV: &str = "PGMORPH_PG_CACHE";
/// Environment variable replacing `/usr/lib/postgresql`, where packaged majors live (a
/// directory that does not exist hides them).
pub const SYSTEM_ROOT_ENV: &str = "PGMORPH_PG_SYSTEM_ROOT";

/// Where Debian and Ubuntu packages install each major's binaries.
const SYSTEM_ROOT: &str = "/usr/lib/postgresql";
/// The cache used when running as root: readable by `nobody`, whom the servers run as.
const ROOT_CACHE: &str = "/var/cache/pgmorph/pg";

/// Which side of a replication pair a server plays, for [`find_bin_dir_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// The server replicated from.
    Source,
    /// The server replicated into.
    Destination,
}

impl ServerRole {
    /// The environment variable naming this role's own bin directory.
    pub fn env(self) -> &'static str {
        match self {
            ServerRole::Source => SOURCE_BIN_DIR_ENV,
            ServerRole::Destination => DEST_BIN_DIR_ENV,
        }
    }
}

/// Finds the bin directory for a server of `role`: `$PGMORPH_SOURCE_PG_BINDIR` or
/// `$PGMORPH_DEST_PG_BINDIR` when set, else [`find_bin_dir`].
pub fn find_bin_dir_for(role: ServerRole) -> Result<PathBuf, ClusterError> {
    match std::env::var_os(role.env()) {
        Some(dir) => checked(role.env(), PathBuf::from(dir)),
        None => find_bin_dir(),
    }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// Order: `$PGMORPH_PG_BINDIR` (if set), then `pg_config --bindir` if that directory has
/// `initdb`, then the highest-numbered `/usr/lib/postgresql/*/bin`, then the highest major in
/// the cache of fetched binaries ([`cache_dir`]).
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    Search::from_env().resolve()
}

/// The cache `scripts/pg-versions` fetches into: `$PGMORPH_PG_CACHE`, else
/// `/var/cache/pgmorph/pg` for root, else `${XDG_CACHE_HOME:-$HOME/.cache}/pgmorph/pg`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = env(CACHE_ENV) {
        return Some(PathBuf::from(dir));
    }
    if super::user::RunAs::detect().is_some() {
        return Some(PathBuf::from(ROOT_CACHE));
    }
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pgmorph").join("pg"))
}

/// The `psql` to run against a cluster of `bin_dir`: its own, else one from `PATH`,
/// `pg_config --bindir` or the packaged majors (the fetched binaries have none; any psql
/// runs plain SQL against servers 14 to 18). `bin_dir/psql` when there is none at all.
pub(crate) fn find_psql(bin_dir: &Path) -> PathBuf {
    let own = bin_dir.join("psql");
    if own.is_file() {
        return own;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let packaged = || {
        pg_config_bindir()
            .into_iter()
            .chain(highest_versioned_bindir(&system_root(), "psql"))
    };
    on_path
        .into_iter()
        .map(|dir| dir.join("psql"))
        .find(|psql| psql.is_file())
        .or_else(|| {
            packaged()
                .map(|dir| dir.join("psql"))
                .find(|psql| psql.is_file())
        })
        .unwrap_or(own)
}

/// The places [`find_bin_dir`] looks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Search {
    /// `$PGMORPH_PG_BINDIR`: used alone when set.
    explicit: Option<PathBuf>,
    /// `pg_config --bindir`.
    pg_config: Option<PathBuf>,
    /// `/usr/lib/postgresql` or `$PGMORPH_PG_SYSTEM_ROOT`.
    system_root: PathBuf,
    /// The cache of fetched binaries.
    cache: Option<PathBuf>,
}

impl Search {
    fn from_env() -> Self {
        Search {
            explicit: std::env::var_os(BIN_DIR_ENV).map(PathBuf::from),
            pg_config: pg_config_bindir(),
            system_root: system_root(),
            cache: cache_dir(),
        }
    }

    fn resolve(self) -> Result<PathBuf, ClusterError> {
        if let Some(dir) = self.explicit {
            return checked(BIN_DIR_ENV, dir);
        }
        if let Some(dir) = self.pg_config.filter(|dir| has_initdb(dir)) {
            return Ok(dir);
        }
        let found = highest_versioned_bindir(&self.system_root, "initdb").or_else(|| {
            self.cache
                .as_deref()
                .and_then(|cache| highest_versioned_bindir(cache, "initdb"))
        });
        found.ok_or_else(|| {
            let cache = self.cache.map_or_else(
                || "(no cache: HOME unset)".into(),
                |c| c.display().to_string(),
            );
            ClusterError::BinDirNotFound(format!(
                "neither `pg_config --bindir` nor {}/*/bin nor the cache {cache} has initdb \
                 (fill the cache with scripts/pg-versions, or set ${BIN_DIR_ENV})",
                self.system_root.display()
            ))
        })
    }
}

/// `dir` when it has `initdb`; else an error naming the variable `env` that chose it.
fn checked(env: &str, dir: PathBuf) -> Result<PathBuf, ClusterError> {
    if has_initdb(&dir) {
        Ok(dir)
    } else {
        Err(ClusterError::BinDirNotFound(format!(
            "${env}={} has no initdb",
            dir.display()
        )))
    }
}

/// `/usr/lib/postgresql`, or `$PGMORPH_PG_SYSTEM_ROOT`.
fn system_root() -> PathBuf {
    std::env::var_os(SYSTEM_ROOT_ENV).map_or_else(|| PathBuf::from(SYSTEM_ROOT), PathBuf::from)
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

/// Picks `<root>/<highest version>/bin` among versions whose bin has `program`.
fn highest_versioned_bindir(root: &Path, program: &str) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join(program).is_file().then_some((version, bin))
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
        assert_eq!(version_key(".fetch-14.AbC"), None);
    }

    /// A directory tree of `<major>/bin/initdb` files for the given majors.
    fn majors(root: &Path, names: &[&str]) {
        for name in names {
            let bin = root.join(name).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
        }
    }

    fn search(system: &Path, cache: &Path) -> Search {
        Search {
            explicit: None,
            pg_config: None,
            system_root: system.to_path_buf(),
            cache: Some(cache.to_path_buf()),
        }
    }

    #[test]
    fn picks_the_highest_major_with_initdb() {
        let root = tempfile::tempdir().unwrap();
        majors(root.path(), &["9.6", "14", "18"]);
        std::fs::create_dir_all(root.path().join("19/bin")).unwrap();
        std::fs::create_dir_all(root.path().join(".fetch-20.x/bin")).unwrap();
        assert_eq!(
            highest_versioned_bindir(root.path(), "initdb"),
            Some(root.path().join("18/bin"))
        );
    }

    #[test]
    fn system_packages_come_before_the_cache() {
        let (system, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        majors(system.path(), &["15"]);
        majors(cache.path(), &["14", "18"]);
        let found = search(system.path(), cache.path()).resolve().unwrap();
        assert_eq!(found, system.path().join("15/bin"));
    }

    #[test]
    fn the_cache_serves_when_nothing_is_installed() {
        let cache = tempfile::tempdir().unwrap();
        majors(cache.path(), &["14", "17", "16"]);
        let hidden = cache.path().join("no-such-system-root");
        let found = search(&hidden, cache.path()).resolve().unwrap();
        assert_eq!(found, cache.path().join("17/bin"));
    }

    #[test]
    fn an_explicit_dir_wins_and_must_have_initdb() {
        let (system, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        majors(system.path(), &["18"]);
        majors(cache.path(), &["14"]);
        let mut chosen = search(system.path(), cache.path());
        chosen.explicit = Some(cache.path().join("14/bin"));
        assert_eq!(
            chosen.clone().resolve().unwrap(),
            cache.path().join("14/bin")
        );
        chosen.explicit = Some(cache.path().join("16/bin"));
        let error = chosen.resolve().unwrap_err().to_string();
        assert!(error.contains("$PGMORPH_PG_BINDIR=") && error.contains("16/bin has no initdb"));
    }

    #[test]
    fn nothing_found_names_every_place_and_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let error = search(&empty.path().join("sys"), &empty.path().join("cache"))
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("/sys/*/bin"), "{error}");
        assert!(error.contains("/cache has initdb"), "{error}");
        assert!(error.contains("scripts/pg-versions"), "{error}");
    }

    #[test]
    fn pg_config_comes_first_when_it_has_initdb() {
        let (system, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        majors(system.path(), &["15", "16"]);
        let mut chosen = search(system.path(), cache.path());
        chosen.pg_config = Some(system.path().join("15/bin"));
        assert_eq!(
            chosen.clone().resolve().unwrap(),
            system.path().join("15/bin")
        );
        chosen.pg_config = Some(system.path().join("client-only"));
        assert_eq!(chosen.resolve().unwrap(), system.path().join("16/bin"));
    }
}
