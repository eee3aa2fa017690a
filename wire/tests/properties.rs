//! Property tests: every batch and verdict list round-trips through the encoders and decoders,
//! for every type class, cell kind, operation and verdict; arbitrary bytes never panic.

use pgmorph_wire::{
    decode_batch, decode_verdicts, write_change, write_count, write_error, write_keep,
    write_modified, write_route, write_skip, CellRef, CellSpan, Op, TypeClass, Verdict,
};
use proptest::prelude::*;

/// An owned cell, as a side of the wire would hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Null,
    Unchanged,
    Text(Vec<u8>),
}

impl Cell {
    fn as_ref(&self) -> CellRef<'_> {
        match self {
            Cell::Null => CellRef::Null,
            Cell::Unchanged => CellRef::Unchanged,
            Cell::Text(t) => CellRef::Text(t),
        }
    }

    fn from_span(span: CellSpan, buf: &[u8]) -> Cell {
        match span.get(buf) {
            CellRef::Null => Cell::Null,
            CellRef::Unchanged => Cell::Unchanged,
            CellRef::Text(t) => Cell::Text(t.to_vec()),
        }
    }
}

type Row = Vec<Cell>;
type Change = (Op, Option<Row>, Option<Row>);

/// Spellings of an SQL type of each class (an array's element is any non-array class).
fn spellings(class: TypeClass) -> &'static [&'static str] {
    match class {
        TypeClass::Boolean => &["boolean", "bool"],
        TypeClass::Integer => &[
            "integer",
            "int8",
            "bigserial",
            "pg_catalog.int4",
            "smallint",
        ],
        TypeClass::Float => &["double precision", "real", "float8"],
        TypeClass::Numeric => &["numeric(12,2)", "decimal", "money"],
        TypeClass::Text => &["text", "character varying(20)", "bpchar", "citext", "name"],
        TypeClass::Bytes => &["bytea"],
        TypeClass::Date => &["date"],
        TypeClass::Time => &["time with time zone", "timetz", "time(3)"],
        TypeClass::Timestamp => &["timestamp", "timestamp(6) without time zone"],
        TypeClass::Timestamptz => &["timestamptz", "timestamp(3) with time zone"],
        TypeClass::Interval => &["interval"],
        TypeClass::Uuid => &["uuid"],
        TypeClass::Json => &["json", "jsonb"],
        TypeClass::Array => &[],
        TypeClass::Other => &["point", "\"sales\".\"mood\"", "inet"],
    }
}

/// A text value of the class, in PostgreSQL's text output form.
fn value(class: TypeClass) -> BoxedStrategy<Vec<u8>> {
    let pattern = match class {
        TypeClass::Boolean => "[tf]",
        TypeClass::Integer => "-?[0-9]{1,19}",
        TypeClass::Float => "(-?[0-9]{1,5}\\.[0-9]{1,17}|NaN|-?Infinity)",
        TypeClass::Numeric => "-?[0-9]{1,30}(\\.[0-9]{1,10})?",
        TypeClass::Text | TypeClass::Other => "\\PC{0,40}",
        TypeClass::Bytes => "\\\\x([0-9a-f]{2}){0,20}",
        TypeClass::Date => "[0-9]{4}-[01][0-9]-[0-3][0-9]",
        TypeClass::Time => "[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?",
        TypeClass::Timestamp => "[0-9]{4}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]",
        TypeClass::Timestamptz => {
            "[0-9]{4}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]\\+00"
        }
        TypeClass::Interval => "[0-9]{1,3} days [0-9]{2}:[0-9]{2}:[0-9]{2}",
        TypeClass::Uuid => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        TypeClass::Json => "\\{(\"[a-z]{1,5}\": (-?[0-9]{1,4}|null|\"\\PC{0,8}\"))?\\}",
        TypeClass::Array => "\\{([0-9]{1,3}|NULL)(,([0-9]{1,3}|NULL)){0,5}\\}",
    };
    pattern.prop_map(String::into_bytes).boxed()
}

/// A column: an SQL type of a class, spelled with random case and spacing, and its class.
fn column() -> impl Strategy<Value = (String, TypeClass, Option<TypeClass>)> {
    let scalar = || {
        prop::sample::select(&TypeClass::ALL[..])
            .prop_filter("scalar", |c| *c != TypeClass::Array)
            .prop_flat_map(|c| (prop::sample::select(spellings(c)), Just(c)))
    };
    (scalar(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |((spelling, class), upper, spaced, array)| {
            let mut sql = if upper {
                spelling.to_ascii_uppercase()
            } else {
                spelling.to_string()
            };
            if spaced {
                sql = format!("  {}\t", sql.replace(' ', "   "));
            }
            if array {
                (format!("{sql}[]"), TypeClass::Array, Some(class))
            } else {
                (sql, class, None)
            }
        },
    )
}

fn cell(class: TypeClass) -> impl Strategy<Value = Cell> {
    prop_oneof![
        1 => Just(Cell::Null),
        1 => Just(Cell::Unchanged),
        4 => value(class).prop_map(Cell::Text),
    ]
}

fn row(classes: Vec<TypeClass>) -> impl Strategy<Value = Row> {
    classes.into_iter().map(cell).collect::<Vec<_>>()
}

/// A table's columns and a batch of its changes.
fn batch() -> impl Strategy<Value = (Vec<TypeClass>, Vec<Change>)> {
    prop::collection::vec(column(), 0..6).prop_flat_map(|columns| {
        let classes: Vec<TypeClass> = columns.iter().map(|c| c.1).collect();
        let change = (
            prop::sample::select(&Op::ALL[..]),
            prop::option::of(row(classes.clone())),
            prop::option::of(row(classes.clone())),
        );
        (Just(classes), prop::collection::vec(change, 0..8))
    })
}

fn verdict(classes: Vec<TypeClass>) -> impl Strategy<Value = Verdict<Row>> {
    prop_oneof![
        Just(Verdict::Keep),
        (
            prop::option::of(row(classes.clone())),
            prop::option::of(row(classes))
        )
            .prop_map(|(old, new)| Verdict::Modified { old, new }),
        Just(Verdict::Skip),
        "\\PC{0,30}".prop_map(Verdict::Error),
        "[a-z]{1,8}\\.[a-z]{1,8}".prop_map(Verdict::Route),
    ]
}

fn verdicts() -> impl Strategy<Value = (usize, Vec<Verdict<Row>>)> {
    prop::collection::vec(prop::sample::select(&TypeClass::ALL[..]), 0..6).prop_flat_map(
        |classes| {
            (
                Just(classes.len()),
                prop::collection::vec(verdict(classes), 0..8),
            )
        },
    )
}

fn cells(row: &Row) -> impl Iterator<Item = CellRef<'_>> {
    row.iter().map(Cell::as_ref)
}

fn encode_batch(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    write_count(&mut out, changes.len());
    for (op, old, new) in changes {
        write_change(
            &mut out,
            *op,
            old.as_ref().map(cells),
            new.as_ref().map(cells),
        );
    }
    out
}

fn encode_verdicts(verdicts: &[Verdict<Row>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in verdicts {
        match v {
            Verdict::Keep => write_keep(&mut out),
            Verdict::Modified { old, new } => {
                write_modified(&mut out, old.as_ref().map(cells), new.as_ref().map(cells));
            }
            Verdict::Skip => write_skip(&mut out),
            Verdict::Error(m) => write_error(&mut out, m),
            Verdict::Route(t) => write_route(&mut out, t),
        }
    }
    out
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn classifies_every_spelling((sql, class, element) in column()) {
        prop_assert_eq!(TypeClass::of_sql(&sql), (class, element));
    }

    #[test]
    fn batches_round_trip((classes, changes) in batch()) {
        let buf = encode_batch(&changes);
        let decoded = decode_batch(
            &buf,
            classes.len(),
            |span| Cell::from_span(span, &buf),
            |op, old, new| (op, old, new),
        );
        prop_assert_eq!(decoded, Ok(changes));
    }

    #[test]
    fn verdicts_round_trip((width, verdicts) in verdicts()) {
        let buf = encode_verdicts(&verdicts);
        let decoded = decode_verdicts(&buf, verdicts.len(), width, |span| Cell::from_span(span, &buf));
        prop_assert_eq!(decoded, Ok(verdicts));
    }

    #[test]
    fn random_bytes_never_panic(
        buf in prop::collection::vec(any::<u8>(), 0..200),
        count in prop_oneof![0..8usize, Just(u32::MAX as usize), Just(usize::MAX)],
        width in prop_oneof![0..8usize, Just(usize::MAX)],
    ) {
        let _ = decode_batch(&buf, width, |span| Cell::from_span(span, &buf), |op, old, new| (op, old, new));
        let _ = decode_verdicts(&buf, count, width, |span| Cell::from_span(span, &buf));
    }

    #[test]
    fn damaged_batches_never_panic(
        (classes, changes) in batch(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut buf = encode_batch(&changes);
        if !buf.is_empty() {
            let i = flip.index(buf.len());
            buf[i] = byte;
            buf.truncate(cut.index(buf.len() + 1));
        }
        let _ = decode_batch(&buf, classes.len(), |span| Cell::from_span(span, &buf), |op, old, new| (op, old, new));
        let _ = decode_verdicts(&buf, changes.len(), classes.len(), |span| Cell::from_span(span, &buf));
    }
}

#[test]
fn every_class_has_spellings_and_values() {
    for class in TypeClass::ALL {
        if class != TypeClass::Array {
            for s in spellings(class) {
                assert_eq!(TypeClass::of_sql(s), (class, None), "{s}");
            }
            assert!(!spellings(class).is_empty());
        }
    }
}
