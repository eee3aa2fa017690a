//! The per-row cost of plugins, no Postgres involved: `cargo test -p pgmorph-e2e --release
//! --test plugin_cost -- --ignored --nocapture` prints a table.
//!
//! Each case pushes the same 10-column rows, in batches of 1,000, through
//! `Transform::transform_rows` (the pipeline's per-batch call); the best of three rounds is
//! shown, input cloning untimed. "bare call" is one call with a one-row, one-column batch.

mod plugin_support;

use std::sync::Arc;
use std::time::Instant;

use pgmorph::model::{
    Cell, Column, ReplicaIdentity, RowChange, TableMapping, TableName, TableSchema,
};
use pgmorph::transform::{Identity, Transform};
use plugin_support::{chain, insert};

const ROWS: usize = 100_000;
const BATCH: usize = 1_000;

fn table() -> Arc<TableSchema> {
    let types = [
        "bigint",
        "text",
        "text",
        "integer",
        "numeric(12,2)",
        "timestamp with time zone",
        "boolean",
        "text",
        "double precision",
        "jsonb",
    ];
    Arc::new(TableSchema {
        oid: 1,
        name: TableName::new("public", "bench"),
        columns: types
            .iter()
            .enumerate()
            .map(|(i, t)| Column {
                name: if i == 2 {
                    "email".into()
                } else {
                    format!("c{i}")
                },
                type_oid: 0,
                type_modifier: -1,
                type_sql: t.to_string(),
                not_null: i == 0,
                is_key: i == 0,
            })
            .collect(),
        identity: ReplicaIdentity::Default,
        has_primary_key: true,
    })
}

fn rows(m: &TableMapping) -> Vec<Vec<RowChange>> {
    (0..ROWS / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let id = b * BATCH + i;
                    insert(m.project(vec![
                        Cell::text(id.to_string()),
                        Cell::text("some name"),
                        Cell::text(format!("user{id}@example.com")),
                        Cell::text("42"),
                        Cell::text("1234.56"),
                        Cell::text("2024-01-02 03:04:05.123456+00"),
                        Cell::text("t"),
                        Cell::text("a longer piece of text in the row"),
                        Cell::text("3.14159"),
                        Cell::text("{\"k\": [1, 2, 3]}"),
                    ]))
                })
                .collect()
        })
        .collect()
}

fn measure(label: &str, t: &mut dyn Transform) -> f64 {
    let m = t.map_table(table(), "dst").unwrap();
    let template = rows(&m);
    let mut best = f64::MAX;
    let mut kept = 0;
    // Best of three rounds; the first also warms up (instantiation, caches). Cloning the input
    // is not timed.
    for _ in 0..3 {
        let mut batches = template.clone();
        let started = Instant::now();
        for batch in &mut batches {
            t.transform_rows(&m, batch).unwrap();
        }
        best = best.min(started.elapsed().as_secs_f64());
        kept = batches.iter().map(Vec::len).sum::<usize>();
    }
    let ns = best * 1e9 / ROWS as f64;
    println!(
        "{label:<44} {:>10.0} rows/s {ns:>8.0} ns/row  (kept {kept}, row step: {})",
        ROWS as f64 / best,
        m.transforms_rows
    );
    ns
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture, preferably --release"]
fn plugin_cost() {
    println!("{ROWS} rows of 10 columns in batches of {BATCH}");
    let base = measure("no plugin (Identity)", &mut Identity);
    measure(
        "passthrough, mapping only",
        &mut chain(&[("00-pass", "passthrough", "")]).unwrap(),
    );
    let pass = measure(
        "passthrough, all 10 columns per row",
        &mut chain(&[("00-pass", "passthrough", "config = { rows = true }")]).unwrap(),
    );
    measure(
        "mask of 1 column (email)",
        &mut chain(&[(
            "30-mask",
            "mask",
            r#"config = { salt = "s", hash = ["*.email"] }"#,
        )])
        .unwrap(),
    );
    measure(
        "chain filter + rename + mask",
        &mut chain(&[
            ("10-filter", "filter", r#"config = { skip_rows = [{ table = "public.bench", column = "c6", equals = "f" }] }"#),
            ("20-rename", "rename", r#"config = { tables = { "public.bench" = "sales.bench2" }, columns = { "*.c1" = "name" } }"#),
            ("30-mask", "mask", r#"config = { salt = "s", hash = ["*.email"] }"#),
        ])
        .unwrap(),
    );
    measure(
        "chain rename + type-remap + mask (the bench's)",
        &mut chain(&[
            (
                "10-rename",
                "rename",
                r#"config = { columns = { "public.bench.c3" = "qty" } }"#,
            ),
            (
                "20-type-remap",
                "type-remap",
                r#"config = { columns = { "public.bench.c5" = "timestamp" } }"#,
            ),
            (
                "30-mask",
                "mask",
                r#"config = { salt = "s", hash = ["public.bench.c1"] }"#,
            ),
        ])
        .unwrap(),
    );
    // The same inside a Tokio worker, where each call steps out of async (block_in_place).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::spawn(async {
            let mut pass =
                chain(&[("00-pass", "passthrough", "config = { rows = true }")]).unwrap();
            measure("passthrough, all 10 columns, in a Tokio task", &mut pass);
        })
        .await
        .unwrap();
    });
    // The bare call: a one-column table, one row per call.
    let mut one = chain(&[("00-pass", "passthrough", "config = { rows = true }")]).unwrap();
    let t = Arc::new(TableSchema {
        oid: 2,
        name: TableName::new("public", "one"),
        columns: table().columns[..1].to_vec(),
        identity: ReplicaIdentity::Default,
        has_primary_key: true,
    });
    let m = one.map_table(t, "dst").unwrap();
    let calls = 100_000;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut batches: Vec<Vec<RowChange>> = (0..calls)
            .map(|_| vec![insert(vec![Cell::text("1")])])
            .collect();
        let started = Instant::now();
        for batch in &mut batches {
            one.transform_rows(&m, batch).unwrap();
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    let call_ns = best * 1e9 / calls as f64;
    println!(
        "{:<44} {call_ns:>8.0} ns/call",
        "bare call (1 row, 1 column)"
    );
    println!(
        "pass-through crossing cost: {:.0} ns/row over no plugin",
        pass - base
    );
}
