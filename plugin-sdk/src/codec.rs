//! The row batch wire format of `transform-rows` (documented in the WIT file), guest side.

use crate::row::Slot;
use crate::{Change, Column, Error, Op, Row, Verdict};

const TAG_NULL: u8 = 0;
const TAG_UNCHANGED: u8 = 1;
const TAG_TEXT: u8 = 2;

pub(crate) const VERDICT_KEEP: u8 = 0;
pub(crate) const VERDICT_KEEP_MODIFIED: u8 = 1;
pub(crate) const VERDICT_SKIP: u8 = 2;
pub(crate) const VERDICT_ERROR: u8 = 3;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let bytes = self.buf.get(self.pos..self.pos + 4).ok_or_else(truncated)?;
        self.pos += 4;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn row(&mut self, columns: &'a [Column]) -> Result<Row<'a>, Error> {
        let mut cells = Vec::with_capacity(columns.len());
        for _ in columns {
            cells.push(match self.u8()? {
                TAG_NULL => Slot::Null,
                TAG_UNCHANGED => Slot::Unchanged,
                TAG_TEXT => {
                    let len = self.u32()? as usize;
                    let start = self.pos;
                    if start + len > self.buf.len() {
                        return Err(truncated());
                    }
                    self.pos += len;
                    Slot::Span(start as u32, self.pos as u32)
                }
                t => return Err(Error::failed(format!("unknown cell tag {t} in row batch"))),
            });
        }
        Ok(Row::new(columns, self.buf, cells))
    }
}

fn truncated() -> Error {
    Error::failed("row batch is truncated")
}

/// Decodes a batch sent by the host.
pub(crate) fn decode_batch<'a>(
    columns: &'a [Column],
    buf: &'a [u8],
) -> Result<Vec<Change<'a>>, Error> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let op = match r.u8()? {
            0 => Op::Snapshot,
            1 => Op::Insert,
            2 => Op::Update,
            3 => Op::Delete,
            o => return Err(Error::failed(format!("unknown operation {o} in row batch"))),
        };
        let flags = r.u8()?;
        let old = if flags & 1 != 0 {
            Some(r.row(columns)?)
        } else {
            None
        };
        let new = if flags & 2 != 0 {
            Some(r.row(columns)?)
        } else {
            None
        };
        changes.push(Change { op, old, new });
    }
    Ok(changes)
}

/// A row as cell texts (`None` for NULL), in the order of the row columns.
pub(crate) type TextRow = Vec<Option<String>>;

/// Encodes a batch the way the host does (used by the native test helper).
pub(crate) fn encode_batch(changes: &[(Op, Option<TextRow>, Option<TextRow>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (op, old, new) in changes {
        out.push(match op {
            Op::Snapshot => 0,
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 3,
        });
        out.push(u8::from(old.is_some()) | (u8::from(new.is_some()) << 1));
        for row in [old, new].into_iter().flatten() {
            for cell in row {
                match cell {
                    None => out.push(TAG_NULL),
                    Some(text) => {
                        out.push(TAG_TEXT);
                        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
    }
    out
}

fn encode_row(out: &mut Vec<u8>, row: &Row<'_>) {
    for slot in &row.cells {
        match slot {
            Slot::Null => out.push(TAG_NULL),
            Slot::Unchanged => out.push(TAG_UNCHANGED),
            Slot::Span(..) | Slot::Owned(_) => {
                let bytes = row.slot_bytes(slot).unwrap_or_default();
                out.push(TAG_TEXT);
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
}

/// Appends one change's verdict to the result buffer.
pub(crate) fn encode_verdict(
    out: &mut Vec<u8>,
    change: &Change<'_>,
    verdict: Result<Verdict, Error>,
) {
    match verdict {
        Ok(Verdict::Skip) => out.push(VERDICT_SKIP),
        Ok(Verdict::Keep) => {
            let modified = change.old.as_ref().is_some_and(|r| r.dirty)
                || change.new.as_ref().is_some_and(|r| r.dirty);
            if !modified {
                out.push(VERDICT_KEEP);
                return;
            }
            out.push(VERDICT_KEEP_MODIFIED);
            out.push(u8::from(change.old.is_some()) | (u8::from(change.new.is_some()) << 1));
            for row in [&change.old, &change.new].into_iter().flatten() {
                encode_row(out, row);
            }
        }
        Err(e) => {
            out.push(VERDICT_ERROR);
            let msg = e.to_string();
            out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
        }
    }
}
