//! The on-disk cache of compiled components: `<hash>.cwasm` named by the content hash of the
//! component (and pgmorph's version), beside `<hash>.from` naming the plugin file it was
//! first compiled from. Pruned whenever a plugin file is loaded: the other entries compiled from
//! that file are removed (a rebuilt plugin leaves one entry), then the least recently used
//! entries beyond [`MAX_ENTRIES`] or [`MAX_BYTES`] in all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Most compiled components kept.
pub(crate) const MAX_ENTRIES: usize = 64;
/// Most bytes of compiled components kept.
pub(crate) const MAX_BYTES: u64 = 1 << 30;

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
