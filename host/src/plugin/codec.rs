//! The row batch wire format of `transform-rows` (documented in the WIT file), host side.

use bytes::Bytes;

use crate::model::{Cell, Op, Row, RowChange};

const TAG_NULL: u8 = 0;
const TAG_UNCHANGED: u8 = 1;
const TAG_TEXT: u8 = 2;

/// Appends one change, restricted to `positions`, to a batch being encoded.
fn encode_change(out: &mut Vec<u8>, change: &RowChange, positions: &[usize]) {
    out.push(match change.op {
        Op::Snapshot => 0,
        Op::Insert => 1,
        Op::Update => 2,
        Op::Delete => 3,
    });
    out.push(u8::from(change.old.is_some()) | (u8::from(change.new.is_some()) << 1));
    for row in [&change.old, &change.new].into_iter().flatten() {
        for &p in positions {
            match row.get(p).unwrap_or(&Cell::Null) {
                Cell::Null => out.push(TAG_NULL),
                Cell::Unchanged => out.push(TAG_UNCHANGED),
                Cell::Text(text) => {
                    out.push(TAG_TEXT);
                    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                    out.extend_from_slice(text);
                }
            }
        }
    }
}

/// Encodes changes (all of them, or the one at `only`) into `out`.
pub(crate) fn encode(out: &mut Vec<u8>, changes: &[RowChange], positions: &[usize]) {
    out.clear();
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for change in changes {
        encode_change(out, change, positions);
    }
}

/// What the plugin decided for one change.
#[derive(Debug)]
pub(crate) enum Verdict {
    Keep,
    Modified { old: Option<Row>, new: Option<Row> },
    Skip,
    Error(String),
    Route(String),
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("output is truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<usize, String> {
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or("output is truncated")?;
        self.pos += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, String> {
        if self.pos + len > self.buf.len() {
            return Err("output is truncated".into());
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    fn text(&mut self) -> Result<String, String> {
        let len = self.u32()?;
        let b = self.bytes(len)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn row(&mut self, width: usize) -> Result<Row, String> {
        let mut row = Vec::with_capacity(width);
        for _ in 0..width {
            row.push(match self.u8()? {
                TAG_NULL => Cell::Null,
                TAG_UNCHANGED => Cell::Unchanged,
                TAG_TEXT => {
                    let len = self.u32()?;
                    Cell::Text(self.bytes(len)?)
                }
                t => return Err(format!("unknown cell tag {t}")),
            });
        }
        Ok(row)
    }
}

/// Decodes exactly `count` verdicts whose rows have `width` cells.
pub(crate) fn decode(buf: Vec<u8>, count: usize, width: usize) -> Result<Vec<Verdict>, String> {
    let mut r = Reader {
        buf: Bytes::from(buf),
        pos: 0,
    };
    let mut verdicts = Vec::with_capacity(count);
    for i in 0..count {
        let verdict = match r.u8()? {
            0 => Verdict::Keep,
            1 => {
                let flags = r.u8()?;
                let old = if flags & 1 != 0 {
                    Some(r.row(width)?)
                } else {
                    None
                };
                let new = if flags & 2 != 0 {
                    Some(r.row(width)?)
                } else {
                    None
                };
                Verdict::Modified { old, new }
            }
            2 => Verdict::Skip,
            3 => Verdict::Error(r.text()?),
            4 => Verdict::Route(r.text()?),
            v => return Err(format!("unknown verdict {v} for change {i}")),
        };
        verdicts.push(verdict);
    }
    if r.pos != r.buf.len() {
        return Err(format!(
            "{} bytes left after {count} verdicts (wrong row width or verdict count)",
            r.buf.len() - r.pos
        ));
    }
    Ok(verdicts)
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
