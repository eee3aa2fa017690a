//! The on-disk cache of compiled components: `<hash>.cwasm` named by the content hash of the
//! component (and pgmorph's version), beside `<hash>.from` naming the plugin file it was
//! first compiled from. Pruned whenever a plugin file is loaded: the other entries compiled from
//! that file are removed (a rebuilt plugin leaves one entry), then the least recently used
//! entries beyond [`MAX_ENTRIES`] or [`MAX_BYTES`] in all. [`prune_cache`] does the same on
//! demand (`pgmorph plugin cache prune`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Most compiled components kept.
pub const MAX_ENTRIES: usize = 64;
/// Most bytes of compiled components kept.
pub const MAX_BYTES: u64 = 1 << 30;

/// What [`prune_cache`] keeps: the most recently used entries within both caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCaps {
    /// Most entries kept.
    pub max_entries: usize,
    /// Most bytes kept.
    pub max_bytes: u64,
}

impl Default for CacheCaps {
    fn default() -> Self {
        CacheCaps {
            max_entries: MAX_ENTRIES,
            max_bytes: MAX_BYTES,
        }
    }
}

/// What [`prune_cache`] removed and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Compiled components removed.
    pub removed_entries: usize,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Compiled components kept.
    pub kept_entries: usize,
    /// Their bytes.
    pub kept_bytes: u64,
}

/// Prunes the cache in `dir` now: the least recently used entries beyond `caps` (every entry
/// with `caps` of zero), and `.from` files left without their component. A missing directory
/// is an empty cache.
pub fn prune_cache(dir: &Path, caps: CacheCaps) -> std::io::Result<Pruned> {
    if !dir.exists() {
        return Ok(Pruned::default());
    }
    std::fs::read_dir(dir)?; // an unreadable directory is an error, not an empty cache
    let mut all = entries(dir);
    all.sort_by_key(|e| std::cmp::Reverse(e.used));
    let mut pruned = Pruned::default();
    for e in all {
        let within =
            pruned.kept_entries < caps.max_entries && pruned.kept_bytes + e.size <= caps.max_bytes;
        if within {
            pruned.kept_entries += 1;
            pruned.kept_bytes += e.size;
        } else {
            std::fs::remove_file(&e.path)?;
            let _ = std::fs::remove_file(e.path.with_extension("from"));
            pruned.removed_entries += 1;
            pruned.removed_bytes += e.size;
        }
    }
    remove_orphans(dir);
    Ok(pruned)
}

/// Removes `.from` files whose component is gone.
fn remove_orphans(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for path in read.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_some_and(|e| e == "from") && !path.with_extension("cwasm").exists() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `bytes` as the entry `cached` (`<dir>/<hash>.cwasm`), compiled from `source`, and
/// prunes the cache.
pub(crate) fn store(cached: &Path, source: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = cached.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(cached).map_err(|e| e.error)?;
    let from = absolute(source);
    std::fs::write(
        cached.with_extension("from"),
        from.to_string_lossy().as_bytes(),
    )?;
    prune(dir, cached, &from);
    Ok(())
}

/// Marks an entry loaded for `source` as just used, so that pruning removes it last, and
/// removes the other entries compiled from `source` (its earlier builds).
pub(crate) fn used(cached: &Path, source: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(cached) {
        let _ = f.set_modified(SystemTime::now());
    }
    let dir = cached.parent().unwrap_or(Path::new("."));
    prune(dir, cached, &absolute(source));
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

struct Entry {
    path: PathBuf,
    from: Option<String>,
    size: u64,
    used: SystemTime,
}

fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some(Entry {
                from: std::fs::read_to_string(path.with_extension("from")).ok(),
                size: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            })
        })
        .collect()
}

/// Removes other entries compiled from `from`, then the oldest beyond the caps; `keep` stays.
fn prune(dir: &Path, keep: &Path, from: &Path) {
    let from = from.to_string_lossy();
    let mut all = entries(dir);
    all.retain(|e| {
        let stale = e.path != keep && e.from.as_deref() == Some(from.as_ref());
        if stale {
            remove(&e.path);
        }
        !stale
    });
    all.sort_by_key(|e| std::cmp::Reverse(e.used));
    let (mut count, mut bytes) = (0, 0);
    for e in all {
        count += 1;
        bytes += e.size;
        if e.path != keep && (count > MAX_ENTRIES || bytes > MAX_BYTES) {
            remove(&e.path);
        }
    }
}

fn remove(entry: &Path) {
    tracing::debug!(cache = %entry.display(), "pruning compiled plugin");
    let _ = std::fs::remove_file(entry);
    let _ = std::fs::remove_file(entry.with_extension("from"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, size: usize, age_s: u64) {
        let path = dir.join(format!("{name}.cwasm"));
        std::fs::write(&path, vec![0u8; size]).unwrap();
        std::fs::write(path.with_extension("from"), name).unwrap();
        let used = SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(used)
            .unwrap();
    }

    fn left(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn prune_keeps_the_most_recently_used_within_the_caps() {
        let dir = tempfile::tempdir().unwrap();
        entry(dir.path(), "old", 100, 300);
        entry(dir.path(), "mid", 100, 200);
        entry(dir.path(), "new", 100, 100);
        std::fs::write(dir.path().join("gone.from"), "x").unwrap();
        let caps = CacheCaps {
            max_entries: 10,
            max_bytes: 250,
        };
        let pruned = prune_cache(dir.path(), caps).unwrap();
        assert_eq!(pruned.removed_entries, 1);
        assert_eq!(pruned.removed_bytes, 100);
        assert_eq!((pruned.kept_entries, pruned.kept_bytes), (2, 200));
        assert_eq!(
            left(dir.path()),
            ["mid.cwasm", "mid.from", "new.cwasm", "new.from"]
        );
        let all = CacheCaps {
            max_entries: 0,
            max_bytes: 0,
        };
        let pruned = prune_cache(dir.path(), all).unwrap();
        assert_eq!((pruned.removed_entries, pruned.kept_entries), (2, 0));
        assert!(left(dir.path()).is_empty());
    }

    #[test]
    fn a_missing_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let pruned = prune_cache(&dir.path().join("none"), CacheCaps::default()).unwrap();
        assert_eq!(pruned, Pruned::default());
    }
}
