//! The example plugins, loaded from their real `.wasm` files, reshape schemas and rows; the chain
//! composes in file-name order.

mod plugin_support;

use pgmorph::model::{Cell, Op, RowChange, TableName};
use std::sync::Arc;

use pgmorph::plugin::{describe_mapping, PluginChain, PluginError};
use pgmorph::transform::{TableBatch, Transform};
use plugin_support::{chain, insert, order, orders, plugin_dir, text};

#[test]
fn rename_is_mapping_only() {
    let mut chain = chain(&[(
        "20-rename",
        "rename",
        r#"config = { tables = { "public.orders" = "sales.orders_v2" }, columns = { "public.orders.cust_id" = "customer_id" } }"#,
    )])
    .unwrap();
    let m = chain.map_table(orders(1, "orders"), "dst").unwrap();
    assert_eq!(m.destination, TableName::new("sales", "orders_v2"));
    assert_eq!(m.columns[1].name, "customer_id");
    assert_eq!(m.columns[1].source_index, Some(1));
    assert_eq!(m.columns[1].changed_by, ["20-rename"]);
    assert!(m.columns[2].changed_by.is_empty());
    assert!(!m.transforms_rows, "a rename must cost nothing per row");
    // A table the plugin leaves alone lands in the destination's default schema.
    let other = chain.map_table(orders(2, "invoices"), "dst").unwrap();
    assert_eq!(other.destination, TableName::new("dst", "invoices"));
    println!("{}", describe_mapping(&m));
}

#[test]
fn type_remap_converts_only_what_needs_converting() {
    let mut safe = chain(&[(
        "30-type-remap",
        "type-remap",
        r#"config = { columns = { "public.orders.amount" = "text" }, types = { json = "jsonb", integer = "bigint" } }"#,
    )])
    .unwrap();
    let m = safe.map_table(orders(1, "orders"), "dst").unwrap();
    let types: Vec<&str> = m.columns.iter().map(|c| c.type_sql.as_str()).collect();
    assert_eq!(
        types,
        [
            "bigint",
            "bigint",
            "text",
            "text",
            "text",
            "timestamp with time zone",
            "jsonb"
        ]
    );
    assert!(
        !m.transforms_rows,
        "text-safe conversions are left to the destination's cast"
    );

    let mut tz = chain(&[(
        "30-type-remap",
        "type-remap",
        r#"config = { columns = { "public.orders.created" = "timestamp", "public.orders.status" = "integer" } }"#,
    )])
    .unwrap();
    let m = tz.map_table(orders(1, "orders"), "dst").unwrap();
    assert!(m.transforms_rows);
    // Row 2's status cannot become an integer: the default policy (stop) halts.
    let err = tz
        .transform_rows(
            &m,
            &mut vec![
                insert(m.project(order(1, "42"))),
                insert(m.project(order(2, "paid"))),
            ],
        )
        .unwrap_err();
    assert!(
        err.message.contains("30-type-remap") && err.message.contains("paid"),
        "{}",
        err.message
    );
    let mut ok = vec![insert(m.project(order(1, "42")))];
    tz.transform_rows(&m, &mut ok).unwrap();
    let new = ok[0].new.as_ref().unwrap();
    assert_eq!(text(&new[5]), Some("2024-01-02 03:04:05.123"));
    assert_eq!(text(&new[4]), Some("42"));
}

#[test]
fn filter_skips_tables_columns_and_rows() {
    let mut chain = chain(&[(
        "10-filter",
        "filter",
        r#"config = { skip_tables = ["public.audit_*"], skip_columns = ["*.meta"], skip_rows = [{ table = "public.*", column = "status", equals = "test" }, { table = "public.orders", column = "id", in = ["99"] }] }"#,
    )])
    .unwrap();
    assert!(chain.map_table(orders(1, "audit_log"), "dst").unwrap().skip);
    let m = chain.map_table(orders(2, "orders"), "dst").unwrap();
    assert_eq!(m.columns.len(), 6);
    assert!(m.columns.iter().all(|c| c.name != "meta"));
    let mut batch = vec![
        insert(m.project(order(1, "paid"))),
        insert(m.project(order(2, "test"))),
        insert(m.project(order(3, "paid"))),
        RowChange {
            op: Op::Delete,
            old: Some(m.project(vec![
                Cell::text("99"),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ])),
            new: None,
        },
    ];
    let out = chain.transform_rows(&m, &mut batch).unwrap();
    assert_eq!(out.skipped, 2);
    let ids: Vec<_> = batch
        .iter()
        .map(|c| text(&c.new.as_ref().unwrap()[0]).unwrap().to_string())
        .collect();
    assert_eq!(ids, ["1", "3"]);
}

#[test]
fn mask_hashes_stably_and_reads_only_its_columns() {
    let mut chain = chain(&[(
        "30-mask",
        "mask",
        r#"config = { salt = "pepper", hash = ["public.orders.email", "*.id"], redact = ["*.status"] }"#,
    )])
    .unwrap();
    let m = chain.map_table(orders(1, "orders"), "dst").unwrap();
    assert_eq!(
        m.columns[0].type_sql, "text",
        "a hashed bigint key becomes text"
    );
    let mut batch = vec![
        insert(m.project(order(1, "paid"))),
        RowChange {
            op: Op::Update,
            old: Some(m.project(vec![
                Cell::text("1"),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ])),
            new: Some(m.project(order(1, "shipped"))),
        },
    ];
    chain.transform_rows(&m, &mut batch).unwrap();
    let ins = batch[0].new.as_ref().unwrap();
    let upd_old = batch[1].old.as_ref().unwrap();
    let upd_new = batch[1].new.as_ref().unwrap();
    assert_eq!(text(&ins[0]).unwrap().len(), 64);
    assert_eq!(
        ins[0], upd_old[0],
        "the hashed key of an update finds the inserted row"
    );
    assert_eq!(ins[0], upd_new[0]);
    assert_ne!(text(&ins[2]), Some("user1@example.com"));
    assert_eq!(text(&ins[4]), Some("REDACTED"));
    assert_eq!(
        text(&ins[3]),
        Some("12.50"),
        "columns the plugin did not declare are untouched"
    );
    assert_eq!(upd_old[4], Cell::Null, "NULLs stay NULL");
}

#[test]
fn chain_composes_in_file_name_order() {
    let plugins = [
        // Loaded in file-name order, whatever the order here.
        (
            "30-mask",
            "mask",
            r#"config = { salt = "s", hash = ["*.mail"] }"#,
        ),
        (
            "10-filter",
            "filter",
            r#"config = { skip_columns = ["*.meta"], skip_rows = [{ table = "public.orders", column = "status", equals = "test" }] }"#,
        ),
        (
            "20-rename",
            "rename",
            r#"config = { tables = { "public.orders" = "sales.orders_v2" }, columns = { "*.email" = "mail", "*.cust_id" = "customer_id" } }"#,
        ),
    ];
    let mut chain = chain(&plugins).unwrap();
    assert_eq!(chain.names(), ["10-filter", "20-rename", "30-mask"]);
    let m = chain.map_table(orders(1, "orders"), "dst").unwrap();
    assert_eq!(m.destination, TableName::new("sales", "orders_v2"));
    let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["id", "customer_id", "mail", "amount", "status", "created"]
    );
    assert_eq!(m.columns[2].changed_by, ["20-rename"]);
    let mut batch = vec![
        insert(m.project(order(1, "paid"))),
        insert(m.project(order(2, "test"))),
    ];
    let out = chain.transform_rows(&m, &mut batch).unwrap();
    assert_eq!(out.skipped, 1);
    assert_eq!(batch.len(), 1);
    let mail = text(&batch[0].new.as_ref().unwrap()[2]).unwrap();
    assert_eq!(
        mail.len(),
        64,
        "mask saw the column under rename's new name: {mail}"
    );
    println!("{}", describe_mapping(&m));
}

#[test]
fn batches_of_several_tables_go_through_in_one_step_as_they_would_one_by_one() {
    let plugins = [
        (
            "10-filter",
            "filter",
            r#"config = { skip_rows = [{ table = "public.orders", column = "status", equals = "test" }] }"#,
        ),
        (
            "30-mask",
            "mask",
            r#"config = { salt = "s", hash = ["*.email"] }"#,
        ),
    ];
    let mut together = chain(&plugins).unwrap();
    let mut apart = chain(&plugins).unwrap();
    let tables = [
        orders(1, "orders"),
        orders(2, "invoices"),
        orders(1, "orders"),
    ];
    let mut batches = Vec::new();
    let mut expected = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let m = Arc::new(together.map_table(table.clone(), "dst").unwrap());
        apart.map_table(table.clone(), "dst").unwrap();
        let changes = vec![
            insert(m.project(order(i as i64 * 10 + 1, "paid"))),
            insert(m.project(order(i as i64 * 10 + 2, "test"))),
        ];
        let mut one = changes.clone();
        let outcome = apart.transform_rows(&m, &mut one).unwrap();
        expected.push((one, outcome.skipped));
        batches.push(TableBatch::new(m, changes));
    }
    together.transform_batches(&mut batches).unwrap();
    for (batch, (rows, skipped)) in batches.iter().zip(&expected) {
        assert_eq!(&batch.changes, rows, "{}", batch.mapping.source.name);
        assert_eq!(batch.outcome.skipped, *skipped);
    }
    assert_eq!(
        batches
            .iter()
            .map(|b| b.outcome.skipped)
            .collect::<Vec<_>>(),
        [1, 0, 1],
        "the row filter applies to orders only"
    );
    assert_eq!(
        text(&batches[1].changes[0].new.as_ref().unwrap()[2])
            .unwrap()
            .len(),
        64
    );

    // A fault stops the step at the batch it hit, and names that batch's table.
    let mut strict = chain(&[(
        "30-type-remap",
        "type-remap",
        r#"config = { columns = { "public.invoices.status" = "integer" } }"#,
    )])
    .unwrap();
    let mut batches: Vec<TableBatch> = [orders(1, "orders"), orders(2, "invoices")]
        .into_iter()
        .map(|t| {
            let m = Arc::new(strict.map_table(t, "dst").unwrap());
            let changes = vec![insert(m.project(order(1, "paid")))];
            TableBatch::new(m, changes)
        })
        .collect();
    let err = strict.transform_batches(&mut batches).unwrap_err();
    assert_eq!(err.table, "public.invoices");
    assert!(
        err.source.message.contains("paid"),
        "{}",
        err.source.message
    );
}

#[test]
fn a_plugin_that_drops_a_column_another_reads_is_rejected() {
    let mut chain = chain(&[
        ("10-filter", "filter", r#"config = { skip_rows = [{ table = "public.orders", column = "status", equals = "x" }] }"#),
        ("20-filter", "filter", r#"config = { skip_columns = ["*.status"] }"#),
    ])
    .unwrap();
    let err = chain.map_table(orders(1, "orders"), "dst").unwrap_err();
    assert!(
        err.message.contains("10-filter") && err.message.contains("status"),
        "{}",
        err.message
    );
}

#[test]
fn loading_reports_config_and_directory_errors() {
    let err = chain(&[(
        "10-filter",
        "filter",
        r#"config = { skip_rows = [{ table = "x", column = "y" }] }"#,
    )])
    .unwrap_err();
    assert!(matches!(err, PluginError::Init { .. }), "{err}");
    assert!(err.to_string().contains("exactly one of"), "{err}");

    let (dir, mut config) = plugin_dir(&[("10-filter", "filter", "")]);
    config
        .plugins
        .insert("99-missing".into(), Default::default());
    let err = PluginChain::load_with(dir.path(), &config.plugins, &plugin_support::options())
        .unwrap_err();
    assert!(
        matches!(err, PluginError::UnknownPlugin(ref s) if s == "99-missing"),
        "{err}"
    );
}

#[test]
fn check_lists_exports_and_rejects_non_components() {
    let report =
        pgmorph::plugin::check_with(&plugin_support::wasm("mask"), &plugin_support::options())
            .unwrap();
    let text = report.to_string();
    assert!(
        text.contains("pgmorph:plugin/transform@0.1.0: init, map-table, transform-rows\n"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap();
    assert!(matches!(
        pgmorph::plugin::check_with(&bogus, &plugin_support::options()),
        Err(PluginError::Invalid { .. })
    ));
}

#[test]
fn offline_run_reports_every_row() {
    let rows = r#"{"columns": [{"name": "id", "type": "bigint", "key": true}, {"name": "email", "type": "text"}]}
{"id": 1, "email": "a@example.com"}
{"op": "delete", "old": {"id": 2}}
"#;
    let table =
        pgmorph::plugin::schema_from_jsonl(&TableName::new("public", "users"), rows).unwrap();
    let (_dir, config) = plugin_dir(&[(
        "mask",
        "mask",
        r#"config = { salt = "s", hash = ["*.email"] }"#,
    )]);
    let run = pgmorph::plugin::run_offline_with(
        &plugin_support::wasm("mask"),
        &config.plugins["mask"],
        &table,
        rows,
        &plugin_support::options(),
    )
    .unwrap();
    assert_eq!(run.results.len(), 2);
    assert_eq!(run.results[0]["result"], "keep");
    assert_eq!(run.results[0]["new"]["id"], "1");
    assert_eq!(run.results[0]["new"]["email"].as_str().unwrap().len(), 64);
    assert_eq!(run.results[1]["old"]["id"], "2");
}

#[test]
fn compiled_components_are_cached_by_content() {
    let cache = tempfile::tempdir().unwrap();
    let options = pgmorph::plugin::LoadOptions {
        cache_dir: Some(cache.path().to_path_buf()),
    };
    let files = [(
        "00-pass".to_string(),
        plugin_support::wasm("passthrough"),
        Default::default(),
    )];
    let started = std::time::Instant::now();
    PluginChain::from_files(&files, &options).unwrap();
    let compiled = started.elapsed();
    assert_eq!(
        cwasm_files(cache.path()),
        1,
        "one compiled component in the cache"
    );
    let started = std::time::Instant::now();
    let mut chain = PluginChain::from_files(&files, &options).unwrap();
    let cached = started.elapsed();
    println!("compile + instantiate: {compiled:?}; from cache: {cached:?}");
    assert!(cached < compiled, "compile {compiled:?}, cached {cached:?}");
    chain.map_table(orders(1, "orders"), "dst").unwrap();
}

fn cwasm_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count()
}

#[test]
fn a_plugin_rebuilt_twice_leaves_one_compiled_component_in_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let options = pgmorph::plugin::LoadOptions {
        cache_dir: Some(cache.path().to_path_buf()),
    };
    let plugins = tempfile::tempdir().unwrap();
    let file = plugins.path().join("10-p.wasm");
    let other = plugins.path().join("20-q.wasm");
    std::fs::copy(plugin_support::wasm("passthrough"), &other).unwrap();
    for build in ["stamp", "stamp-v2", "passthrough"] {
        std::fs::copy(plugin_support::wasm(build), &file).unwrap();
        let files = [
            ("10-p".to_string(), file.clone(), Default::default()),
            ("20-q".to_string(), other.clone(), Default::default()),
        ];
        PluginChain::from_files(&files, &options).unwrap();
    }
    // stamp and stamp-v2 were replaced; passthrough is the content of both files now.
    assert_eq!(
        cwasm_files(cache.path()),
        1,
        "one entry per current plugin content"
    );
    std::fs::copy(plugin_support::wasm("stamp"), &file).unwrap();
    let files = [("10-p".to_string(), file.clone(), Default::default())];
    PluginChain::from_files(&files, &options).unwrap();
    assert_eq!(cwasm_files(cache.path()), 2, "the other file's entry stays");
}
