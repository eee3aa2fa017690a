//! PostgreSQL's COPY text format: rows to lines and lines to rows.
//!
//! Columns are separated by tabs, rows end with a newline, NULL is `\N`, and backslash,
//! tab, newline and carriage return inside values are escaped with a backslash.

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::{Cell, Row};

/// A COPY text line could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed COPY line: {0}")]
pub struct CopyTextError(&'static str);

/// Appends one row as a COPY text line. `Cell::Unchanged` cannot appear in a COPY and is
/// written as NULL; callers never pass it, nor binary values (they travel in COPY's binary
/// format).
pub fn encode_row(out: &mut BytesMut, row: &[Cell]) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.put_u8(b'\t');
        }
        match cell {
            Cell::Null | Cell::Unchanged => out.put_slice(b"\\N"),
            Cell::Text(v) => escape_into(out, v),
            Cell::Binary(_) => unreachable!("a binary value in a COPY text row"),
        }
    }
    out.put_u8(b'\n');
}

/// Whether COPY text must escape `b`.
#[inline]
fn special(b: u8) -> bool {
    (b == b'\\') | (b == b'\t') | (b == b'\n') | (b == b'\r')
}

/// Whether any byte of `v` must be escaped. Checks 32 bytes at a time without branching per
/// byte, which the compiler turns into vector code; most values need no escape at all.
fn needs_escape(v: &[u8]) -> bool {
    let mut chunks = v.chunks_exact(32);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

fn escape_into(out: &mut BytesMut, v: &[u8]) {
    if !needs_escape(v) {
        out.put_slice(v);
        return;
    }
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.put_slice(&v[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&v[start..]);
}

/// Parses one COPY text line (without its trailing newline) into a row of about `columns`
/// cells. Values without escapes share `line`'s buffer instead of being copied.
pub fn decode_line(line: &Bytes, columns: usize) -> Result<Row, CopyTextError> {
    let mut row = Vec::with_capacity(columns);
    let mut start = 0;
    let mut escaped = false;
    // Tabs only ever separate fields (a tab inside a value is written `\t`).
    let ends = memchr::memchr2_iter(b'\t', b'\\', line).chain(std::iter::once(line.len()));
    for at in ends {
        if at < line.len() && line[at] == b'\\' {
            escaped = true;
            continue;
        }
        row.push(decode_field(line, start, at, escaped)?);
        start = at + 1;
        escaped = false;
    }
    Ok(row)
}

fn decode_field(
    line: &Bytes,
    start: usize,
    end: usize,
    escaped: bool,
) -> Result<Cell, CopyTextError> {
    let field = &line[start..end];
    if !escaped {
        return Ok(Cell::Text(line.slice(start..end)));
    }
    if field == b"\\N" {
        return Ok(Cell::Null);
    }
    let mut v = Vec::with_capacity(field.len());
    let mut it = field.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            v.push(b);
            continue;
        }
        let Some(&e) = it.next() else {
            return Err(CopyTextError("line ends with a backslash"));
        };
        v.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            other => other,
        });
    }
    Ok(Cell::Text(Bytes::from(v)))
}

/// Splits COPY output chunks into complete lines, carrying partial lines across chunks.
#[derive(Default)]
pub struct LineSplitter {
    pending: BytesMut,
}

impl LineSplitter {
    /// Feeds a chunk and calls `f` with each complete line (without the newline); lines inside
    /// the chunk share its buffer.
    pub fn feed<E>(
        &mut self,
        chunk: &Bytes,
        mut f: impl FnMut(&Bytes) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut at = 0;
        if !self.pending.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(p) => {
                    self.pending.put_slice(&chunk[..p]);
                    let line = std::mem::take(&mut self.pending).freeze();
                    f(&line)?;
                    at = p + 1;
                }
                None => {
                    self.pending.put_slice(chunk);
                    return Ok(());
                }
            }
        }
        while let Some(p) = memchr::memchr(b'\n', &chunk[at..]) {
            f(&chunk.slice(at..at + p))?;
            at += p + 1;
        }
        self.pending.put_slice(&chunk[at..]);
        Ok(())
    }

    /// Whether a partial line is left over.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_values() {
        let row = vec![
            Cell::text("plain"),
            Cell::Null,
            Cell::text("tab\there\nnew\\line\r"),
            Cell::text(""),
            Cell::text("\\N"),
        ];
        let mut out = BytesMut::new();
        encode_row(&mut out, &row);
        assert_eq!(out.last(), Some(&b'\n'));
        let back = decode_line(&out.clone().freeze().slice(..out.len() - 1), 1).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn escapes_specials_in_long_values_wherever_they_fall() {
        for at in [0, 5, 31, 32, 33, 63, 64, 70] {
            for special in [b'\\', b'\t', b'\n', b'\r'] {
                let mut v = vec![b'a'; 71];
                v[at] = special;
                let row = vec![Cell::Text(Bytes::from(v.clone()))];
                let mut out = BytesMut::new();
                encode_row(&mut out, &row);
                assert_eq!(out.len(), 71 + 2, "one escape at {at}");
                let back = decode_line(&out.clone().freeze().slice(..out.len() - 1), 1).unwrap();
                assert_eq!(back, row);
            }
        }
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in [&b"a\tb\nc"[..], b"d\te", b"\n\nf\n"] {
            s.feed::<()>(&Bytes::copy_from_slice(chunk), |l| {
                lines.push(l.to_vec());
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            lines,
            vec![b"a\tb".to_vec(), b"cd\te".to_vec(), vec![], b"f".to_vec()]
        );
        assert!(!s.has_partial());
    }
}
