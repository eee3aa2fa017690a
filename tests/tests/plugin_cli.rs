//! `pgmorph plugin check` and `pgmorph plugin run` with the real binary: `check` runs `init`
//! under the deadline, `run` takes the sandbox limits and `on_error`, refuses a rows file without
//! its header line, and prints its timing to stderr; `plugin cache prune` removes compiled
//! components beyond the caps, or all of them.

mod plugin_support;

use pgmorph_e2e::run_bin;
use plugin_support::wasm;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn check_runs_init_under_the_deadline() {
    let fault = wasm("fault");
    let (ok, out, err) = run_bin(&[
        "plugin",
        "check",
        path(&fault),
        "--plugin-config",
        r#"{"mode": "init-loop"}"#,
        "--timeout-ms",
        "200",
    ]);
    assert!(!ok, "a plugin that hangs in init fails the check: {out}");
    assert!(err.contains("ran past its 200 ms deadline"), "{err}");
    let (ok, out, err) = run_bin(&[
        "plugin",
        "check",
        path(&fault),
        "--plugin-config",
        r#"{"mode": "none"}"#,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("init: ok in "), "{out}");
}

#[test]
fn check_reads_the_plugin_config_from_a_json_or_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let fault = wasm("fault");
    let json = dir.path().join("fault.json");
    std::fs::write(&json, r#"{"mode": "init-loop"}"#).unwrap();
    let toml = dir.path().join("fault.toml");
    std::fs::write(&toml, "mode = \"init-loop\"\n").unwrap();
    for file in [&json, &toml] {
        let (ok, out, err) = run_bin(&[
            "plugin",
            "check",
            path(&fault),
            "--plugin-config",
            path(file),
            "--timeout-ms",
            "200",
        ]);
        assert!(!ok, "{}: the config reached init: {out}", file.display());
        assert!(err.contains("ran past its 200 ms deadline"), "{err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "mode = ").unwrap();
    let (ok, _, err) = run_bin(&[
        "plugin",
        "check",
        path(&fault),
        "--plugin-config",
        path(&bad),
    ]);
    assert!(!ok);
    assert!(err.contains("bad.toml: not TOML"), "{err}");
    let (ok, _, err) = run_bin(&["plugin", "check", path(&fault), "--plugin-config", "{nope"]);
    assert!(!ok);
    assert!(err.contains("neither JSON nor a readable file"), "{err}");
}

#[test]
fn run_takes_limits_and_on_error_and_prints_timing() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    let header =
        r#"{"columns": [{"name": "zeta"}, {"name": "id", "type": "bigint", "key": true}]}"#;
    let body = "{\"zeta\": \"z\", \"id\": 1}\n{\"zeta\": \"z\", \"id\": 3}\n{\"zeta\": \"z\", \"id\": 4}\n";
    std::fs::write(&rows, format!("{header}\n{body}")).unwrap();
    let fault = wasm("fault");
    let run = |on_error: &str| {
        run_bin(&[
            "plugin",
            "run",
            path(&fault),
            "--table",
            "public.t",
            "--rows",
            path(&rows),
            "--plugin-config",
            r#"{"mode": "trap", "when_column": "id", "when_equals": "3"}"#,
            "--memory-mb",
            "16",
            "--timeout-ms",
            "300",
            "--on-error",
            on_error,
        ])
    };
    let (ok, out, err) = run("dead_letter");
    assert!(ok, "{err}");
    assert!(
        out.contains(r#""result":"dead_letter""#) && out.contains("panicked: fault plugin: trap"),
        "{out}"
    );
    assert!(err.contains("timing: 3 calls, total "), "{err}");
    assert!(err.contains("ms per call"), "{err}");
    let zeta = out.find("zeta text").unwrap();
    assert!(zeta < out.find("id bigint").unwrap(), "file order: {out}");

    let (ok, out, err) = run("skip");
    assert!(ok, "{err}");
    assert_eq!(out.matches(r#""result":"skip""#).count(), 1, "{out}");

    let (ok, _, err) = run("stop");
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("panicked"), "{err}");
}

#[test]
fn run_refuses_a_rows_file_without_its_header_line() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(&rows, "{\"id\": 1, \"email\": \"a@example.com\"}\n").unwrap();
    let (ok, out, err) = run_bin(&[
        "plugin",
        "run",
        path(&wasm("passthrough")),
        "--table",
        "public.users",
        "--rows",
        path(&rows),
    ]);
    assert!(
        !ok,
        "a file without a header is refused, not guessed: {out}"
    );
    assert!(out.is_empty(), "nothing runs: {out}");
    assert!(
        err.contains("rows.jsonl")
            && err.contains("must start with a header line")
            && err.contains(r#"{"columns": [{"name": "id", "type": "bigint", "key": true}"#),
        "the error names the file and the expected header: {err}"
    );
}

/// Runs `pgmorph ARGS` with `PGMORPH_CACHE_DIR=cache`; returns (success, stdout, stderr).
fn run_cached(cache: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    pgmorph_e2e::run_bin_with_env(args, &[("PGMORPH_CACHE_DIR", cache)])
}

/// The plugin files the cache's entries were compiled from.
fn cached_sources(cache: &std::path::Path) -> Vec<String> {
    let mut from: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .map(|p| std::fs::read_to_string(p.with_extension("from")).unwrap())
        .collect();
    from.sort();
    from
}

#[test]
fn cache_prune_removes_the_least_recently_used_entries_or_all() {
    let cache = tempfile::tempdir().unwrap();
    let plugins = ["passthrough", "rename", "tally"];
    for p in plugins {
        let (ok, _, err) = run_cached(cache.path(), &["plugin", "check", path(&wasm(p))]);
        assert!(ok, "{p}: {err}");
    }
    assert_eq!(
        cached_sources(cache.path()).len(),
        3,
        "one entry per plugin"
    );
    let (ok, out, err) = run_cached(cache.path(), &["plugin", "cache", "prune"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("removed 0 entries (0 bytes)"), "{out}");
    assert!(out.contains("kept 3 entries"), "{out}");

    // `rename` used last: it is the one kept.
    let (ok, _, err) = run_cached(cache.path(), &["plugin", "check", path(&wasm("rename"))]);
    assert!(ok, "{err}");
    let (ok, out, err) = run_cached(
        cache.path(),
        &["plugin", "cache", "prune", "--max-entries", "1"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("removed 2 entries ("), "{out}");
    let kept = cached_sources(cache.path());
    assert_eq!(kept.len(), 1);
    assert!(kept[0].ends_with("pgmorph_plugin_rename.wasm"), "{kept:?}");

    let (ok, out, err) = run_cached(cache.path(), &["plugin", "cache", "prune", "--all"]);
    assert!(ok, "{err}");
    let removed: u64 = out
        .split(['(', ' '])
        .nth(4)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("bytes in {out}"));
    assert!(
        out.starts_with("removed 1 entries (") && removed > 0,
        "{out}"
    );
    assert!(out.contains("kept 0 entries (0 bytes)"), "{out}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}
