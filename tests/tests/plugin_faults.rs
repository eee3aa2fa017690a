//! Every kind of plugin fault (trap, infinite loop, memory bomb, wrong-shaped output, invalid
//! values, returned errors) follows the plugin's `on_error` policy, and the host survives.

mod plugin_support;

use std::time::{Duration, Instant};

use pgmorph::model::TableMapping;
use pgmorph::plugin::PluginChain;
use pgmorph::transform::Transform;
use plugin_support::{chain, insert, order, orders, text};

/// A chain of the fault plugin misbehaving on the row with id 3.
fn faulty(mode: &str, on_error: &str, extra: &str) -> (PluginChain, TableMapping) {
    let settings = format!(
        "on_error = \"{on_error}\"\ntimeout_ms = 200\nmemory_mb = 16\nconfig = {{ mode = \"{mode}\", when_column = \"id\", when_equals = \"3\"{extra} }}"
    );
    let mut chain = chain(&[("50-fault", "fault", &settings)]).unwrap();
    let mapping = chain.map_table(orders(1, "orders"), "dst").unwrap();
    assert!(mapping.transforms_rows);
    (chain, mapping)
}

fn batch(m: &TableMapping, ids: std::ops::RangeInclusive<i64>) -> Vec<pgmorph::model::RowChange> {
    ids.map(|id| insert(m.project(order(id, "paid")))).collect()
}

fn ids(batch: &[pgmorph::model::RowChange]) -> Vec<String> {
    batch
        .iter()
        .map(|c| text(&c.new.as_ref().unwrap()[0]).unwrap().to_string())
        .collect()
}

const FAULTS: [(&str, &str, &str); 7] = [
    ("trap", "", "panicked: fault plugin: trap (at "),
    ("loop", "", "deadline"),
    ("memory", "", "memory limit of 16 MiB"),
    ("wrong-shape", "", "invalid output"),
    (
        "bad-value",
        ", column = \"cust_id\"",
        "not a valid integer value",
    ),
    ("null-key", ", column = \"id\"", "NULL in a key column"),
    ("error", "", "error on this row"),
];

#[test]
fn stop_halts_with_an_error_naming_plugin_and_table() {
    for (mode, extra, expected) in FAULTS {
        let (mut chain, m) = faulty(mode, "stop", extra);
        let mut rows = batch(&m, 1..=5);
        let started = Instant::now();
        let err = chain.transform_rows(&m, &mut rows).unwrap_err();
        assert!(
            err.message.contains("50-fault") && err.message.contains("public.orders"),
            "{mode}: {}",
            err.message
        );
        assert!(err.message.contains(expected), "{mode}: {}", err.message);
        assert!(
            !err.message.contains('\n'),
            "{mode}: one line: {}",
            err.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode} took {:?}",
            started.elapsed()
        );
        // The host survives: the next batch without the bad row goes through.
        let mut clean = batch(&m, 4..=6);
        chain.transform_rows(&m, &mut clean).unwrap();
        assert_eq!(ids(&clean), ["4", "5", "6"], "{mode}");
    }
}

#[test]
fn skip_drops_only_the_bad_row() {
    for (mode, extra, _) in FAULTS {
        let (mut chain, m) = faulty(mode, "skip", extra);
        let mut rows = batch(&m, 1..=5);
        let out = chain.transform_rows(&m, &mut rows).unwrap();
        assert_eq!(out.skipped, 1, "{mode}");
        assert!(out.dead_letters.is_empty());
        assert_eq!(ids(&rows), ["1", "2", "4", "5"], "{mode}");
        // The same fault again, after any re-instantiation: still handled.
        let mut again = batch(&m, 3..=4);
        let out = chain.transform_rows(&m, &mut again).unwrap();
        assert_eq!(
            (out.skipped, ids(&again)),
            (1, vec!["4".to_string()]),
            "{mode}"
        );
    }
}

#[test]
fn dead_letter_keeps_the_bad_row_with_its_error() {
    for (mode, extra, expected) in FAULTS {
        let (mut chain, m) = faulty(mode, "dead_letter", extra);
        let mut rows = batch(&m, 1..=5);
        let out = chain.transform_rows(&m, &mut rows).unwrap();
        assert_eq!(out.skipped, 0, "{mode}");
        assert_eq!(ids(&rows), ["1", "2", "4", "5"], "{mode}");
        let [dead] = &out.dead_letters[..] else {
            panic!("{mode}: {:?}", out.dead_letters)
        };
        assert_eq!(dead.plugin, "50-fault");
        assert_eq!(dead.op, pgmorph::model::Op::Insert);
        assert!(dead.error.contains(expected), "{mode}: {}", dead.error);
        assert_eq!(dead.row["new"]["id"], "3", "{mode}: {}", dead.row);
        assert_eq!(
            dead.row["new"]["email"], "user3@example.com",
            "the row as it was before the plugin"
        );
    }
}

#[test]
fn the_host_survives_repeated_traps() {
    let (mut chain, m) = faulty("trap", "skip", "");
    for _ in 0..20 {
        let mut rows = batch(&m, 2..=4);
        let out = chain.transform_rows(&m, &mut rows).unwrap();
        assert_eq!(out.skipped, 1);
        assert_eq!(ids(&rows), ["2", "4"]);
    }
    let restarts = chain.restarts()[0].1;
    assert!(
        restarts >= 20,
        "each trap re-instantiates the plugin (restarts = {restarts})"
    );
}

#[test]
fn whole_batch_errors_and_init_errors_are_reported() {
    let mut chain = chain(&[(
        "50-fault",
        "fault",
        "on_error = \"dead_letter\"\nconfig = { mode = \"batch-error\" }",
    )])
    .unwrap();
    let m = chain.map_table(orders(1, "orders"), "dst").unwrap();
    let mut rows = batch(&m, 1..=3);
    let out = chain.transform_rows(&m, &mut rows).unwrap();
    assert!(rows.is_empty());
    assert_eq!(out.dead_letters.len(), 3);
    assert!(
        out.dead_letters[0].error.contains("batch-error"),
        "{}",
        out.dead_letters[0].error
    );

    let err = plugin_support::chain(&[("50-fault", "fault", "config = { mode = \"init-error\" }")])
        .unwrap_err();
    assert!(
        err.to_string().contains("50-fault failed to start"),
        "{err}"
    );
}
