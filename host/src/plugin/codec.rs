//! The host's side of the `transform-rows` wire format (owned by `pgmorph-wire`): encoding the
//! model's changes into a batch and decoding the plugin's verdicts into model rows.

use bytes::Bytes;
use pgmorph_wire::{CellRef, CellSpan};

use crate::model::{Cell, Op, Row, RowChange};

/// What the plugin decided for one change, with rows in the model's cells.
pub(crate) type Verdict = pgmorph_wire::Verdict<Row>;

fn wire_op(op: Op) -> pgmorph_wire::Op {
    match op {
        Op::Snapshot => pgmorph_wire::Op::Snapshot,
        Op::Insert => pgmorph_wire::Op::Insert,
        Op::Update => pgmorph_wire::Op::Update,
        Op::Delete => pgmorph_wire::Op::Delete,
    }
}

/// The cells of `row` at `positions` (NULL past its end).
fn cells<'r>(row: &'r Row, positions: &'r [usize]) -> impl Iterator<Item = CellRef<'r>> {
    positions.iter().map(move |&p| match row.get(p) {
        Some(Cell::Text(text)) => CellRef::Text(text),
        // Tables with row plugins are streamed with text values (see `TableMapping::binary_safe`).
        Some(Cell::Binary(_)) => unreachable!("a binary value for a row plugin"),
        Some(Cell::Unchanged) => CellRef::Unchanged,
        Some(Cell::Null) | None => CellRef::Null,
    })
}

/// Encodes changes, restricted to the columns at `positions`, into `out`.
pub(crate) fn encode(out: &mut Vec<u8>, changes: &[RowChange], positions: &[usize]) {
    out.clear();
    pgmorph_wire::write_count(out, changes.len());
    for change in changes {
        pgmorph_wire::write_change(
            out,
            wire_op(change.op),
            change.old.as_ref().map(|row| cells(row, positions)),
            change.new.as_ref().map(|row| cells(row, positions)),
        );
    }
}

/// Decodes exactly `count` verdicts whose rows have `width` cells; text cells are slices of
/// `buf`, not copies.
pub(crate) fn decode(buf: Vec<u8>, count: usize, width: usize) -> Result<Vec<Verdict>, String> {
    let buf = Bytes::from(buf);
    pgmorph_wire::decode_verdicts(&buf, count, width, |cell| match cell {
        CellSpan::Null => Cell::Null,
        CellSpan::Unchanged => Cell::Unchanged,
        CellSpan::Text { start, end } => Cell::Text(buf.slice(start..end)),
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_selected_columns() {
        let change = RowChange {
            op: Op::Update,
            old: Some(vec![Cell::text("1"), Cell::Null, Cell::Null]),
            new: Some(vec![Cell::text("1"), Cell::Unchanged, Cell::text("xy")]),
        };
        let mut out = Vec::new();
        encode(&mut out, &[change], &[2, 1]);
        assert_eq!(out, [1, 0, 0, 0, 2, 3, 0, 0, 2, 2, 0, 0, 0, b'x', b'y', 1]);
    }

    #[test]
    fn decodes_and_rejects_wrong_shapes() {
        let buf = vec![0, 1, 2, 2, 1, 0, 0, 0, b'z', 2, 3, 2, 0, 0, 0, b'n', b'o'];
        let v = decode(buf.clone(), 4, 1).unwrap();
        assert!(matches!(v[0], Verdict::Keep));
        match &v[1] {
            Verdict::Modified {
                old: None,
                new: Some(row),
            } => assert_eq!(row[0], Cell::text("z")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(v[2], Verdict::Skip));
        assert!(matches!(&v[3], Verdict::Error(m) if m == "no"));
        assert!(decode(buf.clone(), 3, 1).is_err());
        assert!(decode(buf, 4, 2).is_err());
    }
}
