//! The SDK's side of the `transform-rows` wire format (owned by `pgmorph-wire`): decoding the
//! host's batch into [`Change`]s, encoding the verdicts, and the test helper's host side.

use pgmorph_wire::{CellRef, CellSpan, Verdict as Wire};

use crate::row::Slot;
use crate::testing::{Outcome, TestRow};
use crate::{Change, Column, Error, Op, Row, Verdict};

fn to_wire(op: Op) -> pgmorph_wire::Op {
    match op {
        Op::Snapshot => pgmorph_wire::Op::Snapshot,
        Op::Insert => pgmorph_wire::Op::Insert,
        Op::Update => pgmorph_wire::Op::Update,
        Op::Delete => pgmorph_wire::Op::Delete,
    }
}

fn from_wire(op: pgmorph_wire::Op) -> Op {
    match op {
        pgmorph_wire::Op::Snapshot => Op::Snapshot,
        pgmorph_wire::Op::Insert => Op::Insert,
        pgmorph_wire::Op::Update => Op::Update,
        pgmorph_wire::Op::Delete => Op::Delete,
    }
}

/// Decodes a batch sent by the host; text cells stay spans of `buf`.
pub(crate) fn decode_batch<'a>(
    columns: &'a [Column],
    buf: &'a [u8],
) -> Result<Vec<Change<'a>>, Error> {
    let slot = |cell| match cell {
        CellSpan::Null => Slot::Null,
        CellSpan::Unchanged => Slot::Unchanged,
        CellSpan::Text { start, end } => Slot::Span(start as u32, end as u32),
    };
    let row = |cells| Row::new(columns, buf, cells);
    pgmorph_wire::decode_batch(buf, columns.len(), slot, |op, old, new| Change {
        op: from_wire(op),
        old: old.map(row),
        new: new.map(row),
    })
    .map_err(|e| Error::failed(format!("malformed row batch: {e}")))
}

/// A row as cell texts (`None` for NULL), in the order of the row columns.
pub(crate) type TextRow = Vec<Option<String>>;

fn text_cells(row: &TextRow) -> impl Iterator<Item = CellRef<'_>> {
    row.iter().map(|c| {
        c.as_deref()
            .map_or(CellRef::Null, |t| CellRef::Text(t.as_bytes()))
    })
}

/// Encodes a batch the way the host does (used by the native test helper).
pub(crate) fn encode_batch(changes: &[(Op, Option<TextRow>, Option<TextRow>)]) -> Vec<u8> {
    let mut out = Vec::new();
    pgmorph_wire::write_count(&mut out, changes.len());
    for (op, old, new) in changes {
        pgmorph_wire::write_change(
            &mut out,
            to_wire(*op),
            old.as_ref().map(text_cells),
            new.as_ref().map(text_cells),
        );
    }
    out
}

fn row_cells<'r>(row: &'r Row<'_>) -> impl Iterator<Item = CellRef<'r>> {
    row.cells.iter().map(move |slot| match slot {
        Slot::Null => CellRef::Null,
        Slot::Unchanged => CellRef::Unchanged,
        Slot::Span(..) | Slot::Owned(_) => CellRef::Text(row.slot_bytes(slot).unwrap_or_default()),
    })
}

/// Appends one change's verdict to the result buffer.
pub(crate) fn encode_verdict(
    out: &mut Vec<u8>,
    change: &Change<'_>,
    verdict: Result<Verdict, Error>,
) {
    match verdict {
        Ok(Verdict::Skip) => pgmorph_wire::write_skip(out),
        Ok(Verdict::Keep) => {
            let modified = change.old.as_ref().is_some_and(|r| r.dirty)
                || change.new.as_ref().is_some_and(|r| r.dirty);
            if modified {
                pgmorph_wire::write_modified(
                    out,
                    change.old.as_ref().map(row_cells),
                    change.new.as_ref().map(row_cells),
                );
            } else {
                pgmorph_wire::write_keep(out);
            }
        }
        Err(e) => pgmorph_wire::write_error(out, &e.to_string()),
    }
}

/// Decodes the one verdict the test helper asked for, over the rows it sent (in the output
/// layout, by column name; `columns` are the row columns in order).
pub(crate) fn decode_outcome(
    out: &[u8],
    columns: &[String],
    old: Option<TestRow>,
    new: Option<TestRow>,
) -> Result<Outcome, Error> {
    let mut verdicts = pgmorph_wire::decode_verdicts(out, 1, columns.len(), |c| c)
        .map_err(|e| Error::failed(format!("malformed verdict: {e}")))?;
    let merge = |base: Option<TestRow>, cells: Vec<CellSpan>| {
        let mut base = base.unwrap_or_default();
        for (name, cell) in columns.iter().zip(cells) {
            match cell.get(out) {
                CellRef::Null => {
                    base.insert(name.clone(), None);
                }
                CellRef::Unchanged => {}
                CellRef::Text(t) => {
                    base.insert(name.clone(), Some(String::from_utf8_lossy(t).into_owned()));
                }
            }
        }
        base
    };
    match verdicts.pop() {
        Some(Wire::Keep) => Ok(Outcome::Kept { old, new }),
        Some(Wire::Skip) => Ok(Outcome::Skipped),
        Some(Wire::Error(message)) => Ok(Outcome::Failed(message)),
        Some(Wire::Modified {
            old: out_old,
            new: out_new,
        }) => Ok(Outcome::Kept {
            old: out_old.map(|cells| merge(old, cells)),
            new: out_new.map(|cells| merge(new, cells)),
        }),
        Some(Wire::Route(table)) => Err(Error::failed(format!(
            "malformed verdict: a route to {table:?}, which pgmorph does not support"
        ))),
        None => Err(Error::failed("malformed verdict: none")),
    }
}
