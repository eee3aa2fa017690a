//! The fixtures the Python and JavaScript SDKs test their codecs against (`wire/fixtures/`):
//! bytes written by this crate's encoders, with what they hold in `cases.json`, and malformed
//! inputs with the exact error this crate's decoders report. The test fails when the committed
//! files differ from what the encoders write; `PGMORPH_WRITE_FIXTURES=1` writes them again.

use std::path::PathBuf;

use pgmorph_wire::{
    decode_batch, decode_verdicts, write_change, write_count, write_error, write_keep,
    write_modified, write_route, write_skip, CellRef, Op,
};
use serde_json::{json, Value};

/// A cell as JSON: a string for text, `null` for NULL, `{"unchanged": true}` for an unchanged
/// TOAST value.
fn cell_json(cell: CellRef<'_>) -> Value {
    match cell {
        CellRef::Null => Value::Null,
        CellRef::Unchanged => json!({ "unchanged": true }),
        CellRef::Text(t) => Value::String(String::from_utf8(t.to_vec()).expect("UTF-8 sample")),
    }
}

fn row_json(row: &Option<Vec<CellRef<'_>>>) -> Value {
    row.as_ref()
        .map_or(Value::Null, |r| r.iter().map(|c| cell_json(*c)).collect())
}

type SampleRow = Option<Vec<CellRef<'static>>>;

fn t(s: &'static str) -> CellRef<'static> {
    CellRef::Text(s.as_bytes())
}

/// Changes of every operation and cell kind: empty, multi-byte UTF-8 and a 300-byte text.
fn sample_changes() -> Vec<(Op, SampleRow, SampleRow)> {
    let long: &'static str = Box::leak("ab".repeat(150).into_boxed_str());
    vec![
        (Op::Snapshot, None, Some(vec![t("1"), CellRef::Null, t("")])),
        (Op::Insert, None, Some(vec![t("2"), t("żółw 🐢"), t(long)])),
        (
            Op::Update,
            Some(vec![t("2"), CellRef::Null, CellRef::Null]),
            Some(vec![t("2"), t("x"), CellRef::Unchanged]),
        ),
        (
            Op::Delete,
            Some(vec![t("3"), CellRef::Null, CellRef::Null]),
            None,
        ),
    ]
}

fn batch() -> (Vec<u8>, Value) {
    let changes = sample_changes();
    let mut out = Vec::new();
    write_count(&mut out, changes.len());
    for (op, old, new) in &changes {
        write_change(&mut out, *op, old.clone(), new.clone());
    }
    let described: Vec<Value> = changes
        .iter()
        .map(
            |(op, old, new)| json!({ "op": op.code(), "old": row_json(old), "new": row_json(new) }),
        )
        .collect();
    // What the decoder reads back is what was written.
    let decoded = decode_batch(&out, 3, |c| cell_json(c.get(&out)), |op, old, new| {
        json!({ "op": op.code(), "old": old.map_or(Value::Null, Value::from), "new": new.map_or(Value::Null, Value::from) })
    })
    .unwrap();
    assert_eq!(decoded, described);
    (out, json!({ "width": 3, "changes": described }))
}

fn verdicts() -> (Vec<u8>, Value) {
    let mut out = Vec::new();
    write_keep(&mut out);
    write_modified(
        &mut out,
        None::<Vec<CellRef>>,
        Some(vec![t("7"), CellRef::Null]),
    );
    write_modified(
        &mut out,
        Some(vec![t("a"), CellRef::Unchanged]),
        Some(vec![t("b"), t("ü")]),
    );
    write_skip(&mut out);
    write_error(&mut out, "column \"x\": 'y' is not an integer – ß");
    write_route(&mut out, "sales.orders");
    let described = json!([
        { "keep": true },
        { "modified": { "old": null, "new": ["7", null] } },
        { "modified": { "old": ["a", { "unchanged": true }], "new": ["b", "ü"] } },
        { "skip": true },
        { "error": "column \"x\": 'y' is not an integer – ß" },
        { "route": "sales.orders" },
    ]);
    assert_eq!(decode_verdicts(&out, 6, 2, |c| c).unwrap().len(), 6);
    (
        out,
        json!({ "count": 6, "width": 2, "verdicts": described }),
    )
}

/// Malformed inputs with the error the decoders report.
fn errors() -> Value {
    let batch_case = |bytes: &[u8], width: usize| {
        let err = decode_batch(bytes, width, |c| c, |_, _, _| ()).unwrap_err();
        json!({ "decode": "batch", "bytes": bytes, "width": width, "error": err.to_string() })
    };
    let verdict_case = |bytes: &[u8], count: usize, width: usize| {
        let err = decode_verdicts(bytes, count, width, |c| c).unwrap_err();
        json!({ "decode": "verdicts", "bytes": bytes, "count": count, "width": width, "error": err.to_string() })
    };
    json!([
        batch_case(&[1, 0], 1),
        batch_case(&[1, 0, 0, 0, 1, 2], 1),
        batch_case(&[1, 0, 0, 0, 1, 2, 2, 1, 0], 1),
        batch_case(&[255, 255, 255, 255], 3),
        batch_case(&[1, 0, 0, 0, 1, 2, 7], 1),
        batch_case(&[2, 0, 0, 0, 1, 0, 4, 0], 0),
        batch_case(&[1, 0, 0, 0, 1, 2, 2, 5, 0, 0, 0, b'a', b'b'], 1),
        batch_case(&[1, 0, 0, 0, 1, 2, 0, 0], 1),
        verdict_case(&[0], 2, 1),
        verdict_case(&[1, 1, 3], 1, 1),
        verdict_case(&[0, 2, 9], 3, 1),
        verdict_case(&[3, 255, 255, 255, 255], 1, 0),
        verdict_case(&[0, 2], 1, 1),
    ])
}

#[test]
fn sdk_fixtures_match_the_encoders() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (batch_bytes, batch_cases) = batch();
    let (verdict_bytes, verdict_cases) = verdicts();
    let cases = json!({
        "batch": batch_cases,
        "verdicts": verdict_cases,
        "errors": errors(),
    });
    let mut cases_text = serde_json::to_string_pretty(&cases).unwrap();
    cases_text.push('\n');
    let files = [
        ("batch.bin", batch_bytes),
        ("verdicts.bin", verdict_bytes),
        ("cases.json", cases_text.into_bytes()),
    ];
    if std::env::var_os("PGMORPH_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &files {
        let committed = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!("wire/fixtures/{name}: {e} (PGMORPH_WRITE_FIXTURES=1 writes it)")
        });
        assert!(
            committed == *bytes,
            "wire/fixtures/{name} differs from what pgmorph-wire writes (PGMORPH_WRITE_FIXTURES=1 writes it again)"
        );
    }
}
