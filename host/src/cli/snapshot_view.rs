//! The snapshot's progress in `pgmorph status`: per table and in all, as text or JSON.

use pgmorph::model::CopyFigures;

/// The total over `tables`.
fn total(tables: &[(String, CopyFigures)]) -> CopyFigures {
    let mut total = CopyFigures {
        est_rows: Some(0),
        done: true,
        ..CopyFigures::default()
    };
    for (_, f) in tables {
        total.add(f);
    }
    total
}

/// `{"done": bool, "total": {...}, "tables": {"public.t": {...}}}`, with each figure's rate
/// (rows/s) and ETA (seconds); `null` when no snapshot progress was recorded.
pub fn json(tables: &[(String, CopyFigures)]) -> serde_json::Value {
    if tables.is_empty() {
        return serde_json::Value::Null;
    }
    let one = |f: &CopyFigures| {
        let mut v = serde_json::to_value(f).unwrap_or_default();
        v["rows_per_sec"] = serde_json::json!(f.rate().round());
        v["eta_secs"] = serde_json::json!(f.eta().map(f64::round));
        v
    };
    let total = total(tables);
    let by_table: serde_json::Map<String, serde_json::Value> =
        tables.iter().map(|(t, f)| (t.clone(), one(f))).collect();
    serde_json::json!({ "done": total.done, "total": one(&total), "tables": by_table })
}

/// Prints the progress section (nothing when no snapshot progress was recorded).
pub fn print(tables: &[(String, CopyFigures)]) {
    if tables.is_empty() {
        return;
    }
    let total = total(tables);
    println!();
    let state = if total.done { "done" } else { "copying" };
    println!("snapshot        {state}: {total}");
    for (table, f) in tables {
        println!("  {table:<30} {f}");
    }
}
