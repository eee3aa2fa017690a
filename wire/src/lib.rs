//! The wire format of pgmorph's `transform-rows` plugin call, shared by the host and the plugin
//! SDK so that the two sides cannot drift apart: the row batch the host sends, the verdicts the
//! plugin returns, and the SQL type classes both derive from column types.
//!
//! The format is documented in the WIT file (`wit/pgmorph-plugin-0.1.0/plugin.wit`). All
//! integers are little-endian:
//!
//! ```text
//! batch:    u32 change count, then per change:
//!             u8 op (0 snapshot, 1 insert, 2 update, 3 delete)
//!             u8 flags (bit 0: old row present, bit 1: new row present)
//!             old row if present, then new row if present; a row is one cell per column:
//!               u8 tag (0 null, 1 unchanged TOAST value, 2 text)
//!               for text: u32 length, then that many bytes
//! verdicts: one per change, in order:
//!             u8 0 keep unchanged
//!             u8 1 keep with new values: u8 flags, then the rows, encoded as in the batch
//!             u8 2 skip
//!             u8 3 error: u32 length + UTF-8 message
//!             u8 4 route: u32 length + `schema.table` (reserved)
//! ```
//!
//! The crate works over plain slices and closures so that each side keeps its own row types:
//! encoders take iterators of [`CellRef`], decoders hand each cell to a closure as a
//! [`CellSpan`] (a byte range of the input, so the host can slice one shared buffer without
//! copying) and collect the closure's results. Decoding never panics and never preallocates
//! more than the input's remaining bytes could fill, whatever a plugin returns.

/// A plugin that panics writes one line to its stderr starting with this prefix, followed by
/// the panic message and its location (`fault plugin: trap (at src/lib.rs:70)`); the host puts
/// that message in the row's error and dead letter instead of the trap's backtrace. The Rust
/// SDK's panic hook writes it; a plugin in another language may too.
pub const PANIC_LINE_PREFIX: &str = "pgmorph-plugin-panic: ";

mod batch;
mod error;
mod read;
mod types;
mod verdict;

pub use batch::{decode_batch, write_change, write_count};
pub use error::WireError;
pub use types::TypeClass;
pub use verdict::{
    decode_verdicts, write_error, write_keep, write_modified, write_route, write_skip, Verdict,
};

/// What happened to a row, with its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read by the initial snapshot (code 0).
    Snapshot,
    /// Inserted (code 1).
    Insert,
    /// Updated (code 2).
    Update,
    /// Deleted (code 3).
    Delete,
}

impl Op {
    /// Every operation, in code order.
    pub const ALL: [Op; 4] = [Op::Snapshot, Op::Insert, Op::Update, Op::Delete];

    /// The operation's wire code.
    #[inline]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The operation with this wire code.
    #[inline]
    pub fn from_code(code: u8) -> Option<Op> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// One cell to encode, borrowed from the caller's own row type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRef<'a> {
    /// SQL NULL (tag 0).
    Null,
    /// An unchanged TOAST value the source did not send (tag 1).
    Unchanged,
    /// A value in PostgreSQL's text form (tag 2).
    Text(&'a [u8]),
}

/// One decoded cell: where its text lies in the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellSpan {
    /// SQL NULL.
    Null,
    /// An unchanged TOAST value the source did not send.
    Unchanged,
    /// A value whose text is `buf[start..end]` of the buffer that was decoded.
    Text {
        /// Offset of the first byte of the text.
        start: usize,
        /// Offset just past the text.
        end: usize,
    },
}

impl CellSpan {
    /// The cell borrowed from `buf`, the buffer it was decoded from.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than the span, i.e. not the buffer the cell was decoded from.
    #[inline]
    pub fn get(self, buf: &[u8]) -> CellRef<'_> {
        match self {
            CellSpan::Null => CellRef::Null,
            CellSpan::Unchanged => CellRef::Unchanged,
            CellSpan::Text { start, end } => CellRef::Text(&buf[start..end]),
        }
    }
}

const TAG_NULL: u8 = 0;
const TAG_UNCHANGED: u8 = 1;
const TAG_TEXT: u8 = 2;

const FLAG_OLD: u8 = 1;
const FLAG_NEW: u8 = 2;

/// Appends a length or count as a little-endian `u32`.
#[inline]
fn put_u32(out: &mut Vec<u8>, n: usize) {
    debug_assert!(u32::try_from(n).is_ok(), "{n} does not fit the wire's u32");
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Appends length-prefixed bytes.
#[inline]
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the presence flags and then the rows that are present.
fn put_rows<'c, O, N>(out: &mut Vec<u8>, old: Option<O>, new: Option<N>)
where
    O: IntoIterator<Item = CellRef<'c>>,
    N: IntoIterator<Item = CellRef<'c>>,
{
    let mut flags = 0;
    if old.is_some() {
        flags |= FLAG_OLD;
    }
    if new.is_some() {
        flags |= FLAG_NEW;
    }
    out.push(flags);
    if let Some(old) = old {
        old.into_iter().for_each(|c| write_cell(out, c));
    }
    if let Some(new) = new {
        new.into_iter().for_each(|c| write_cell(out, c));
    }
}

/// Appends one cell (tag, and for text its length and bytes).
#[inline(always)]
pub fn write_cell(out: &mut Vec<u8>, cell: CellRef<'_>) {
    match cell {
        CellRef::Null => out.push(TAG_NULL),
        CellRef::Unchanged => out.push(TAG_UNCHANGED),
        CellRef::Text(text) => {
            debug_assert!(u32::try_from(text.len()).is_ok(), "a cell over 4 GiB");
            let [a, b, c, d] = (text.len() as u32).to_le_bytes();
            out.reserve(5 + text.len());
            out.extend_from_slice(&[TAG_TEXT, a, b, c, d]);
            out.extend_from_slice(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(cells: &[Option<&'static str>]) -> Vec<CellRef<'static>> {
        cells
            .iter()
            .map(|c| c.map_or(CellRef::Null, |t| CellRef::Text(t.as_bytes())))
            .collect()
    }

    type NewRows = Vec<(Op, Option<Vec<CellSpan>>)>;

    fn spans(buf: &[u8], width: usize) -> Result<NewRows, WireError> {
        decode_batch(buf, width, |c| c, |op, _old, new| (op, new))
    }

    fn verdicts(
        buf: &[u8],
        count: usize,
        width: usize,
    ) -> Result<Vec<Verdict<Vec<CellSpan>>>, WireError> {
        decode_verdicts(buf, count, width, |c| c)
    }

    #[test]
    fn encodes_the_documented_bytes() {
        let mut out = Vec::new();
        write_count(&mut out, 1);
        write_change(
            &mut out,
            Op::Update,
            Some(texts(&[None, None])),
            Some([CellRef::Text(b"xy"), CellRef::Unchanged]),
        );
        assert_eq!(out, [1, 0, 0, 0, 2, 3, 0, 0, 2, 2, 0, 0, 0, b'x', b'y', 1]);

        let mut out = Vec::new();
        write_keep(&mut out);
        write_modified(&mut out, None::<[CellRef; 0]>, Some(texts(&[Some("z")])));
        write_skip(&mut out);
        write_error(&mut out, "no");
        write_route(&mut out, "a.b");
        assert_eq!(
            out,
            [
                0, 1, 2, 2, 1, 0, 0, 0, b'z', 2, 3, 2, 0, 0, 0, b'n', b'o', 4, 3, 0, 0, 0, b'a',
                b'.', b'b'
            ]
        );
        let v = verdicts(&out, 5, 1).unwrap();
        assert_eq!(v[0], Verdict::Keep);
        assert_eq!(
            v[1],
            Verdict::Modified {
                old: None,
                new: Some(vec![CellSpan::Text { start: 8, end: 9 }])
            }
        );
        assert_eq!(
            CellSpan::Text { start: 8, end: 9 }.get(&out),
            CellRef::Text(b"z")
        );
        assert_eq!(v[2], Verdict::Skip);
        assert_eq!(v[3], Verdict::Error("no".into()));
        assert_eq!(v[4], Verdict::Route("a.b".into()));
    }

    #[test]
    fn rejects_a_truncated_batch() {
        assert_eq!(
            spans(&[1, 0], 1).unwrap_err(),
            WireError::Truncated {
                what: "the change count",
                at: 0,
                needed: 4,
                left: 2
            }
        );
        // One change announced, the new row's only cell missing.
        let err = spans(&[1, 0, 0, 0, 1, 2], 1).unwrap_err();
        assert_eq!(
            err,
            WireError::Truncated {
                what: "a cell tag",
                at: 6,
                needed: 1,
                left: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "truncated at byte 6: a cell tag needs 1 bytes, 0 left"
        );
        // A huge change count with nothing behind it.
        assert!(matches!(
            spans(&[255, 255, 255, 255], 3),
            Err(WireError::Truncated {
                what: "an operation",
                ..
            })
        ));
        assert!(matches!(
            verdicts(&[0], 2, 1),
            Err(WireError::Truncated {
                what: "a verdict",
                ..
            })
        ));
    }

    #[test]
    fn rejects_an_unknown_tag() {
        let err = spans(&[1, 0, 0, 0, 1, 2, 7], 1).unwrap_err();
        assert_eq!(err, WireError::UnknownTag { tag: 7, at: 6 });
        assert_eq!(err.to_string(), "unknown cell tag 7 at byte 6");
        assert_eq!(
            verdicts(&[1, 1, 3], 1, 1).unwrap_err(),
            WireError::UnknownTag { tag: 3, at: 2 }
        );
    }

    #[test]
    fn rejects_an_unknown_op() {
        let err = spans(&[2, 0, 0, 0, 1, 0, 4, 0], 0).unwrap_err();
        assert_eq!(err, WireError::UnknownOp { op: 4, change: 1 });
        assert_eq!(err.to_string(), "unknown operation 4 for change 1");
    }

    #[test]
    fn rejects_an_unknown_verdict() {
        let err = verdicts(&[0, 2, 9], 3, 1).unwrap_err();
        assert_eq!(
            err,
            WireError::UnknownVerdict {
                verdict: 9,
                change: 2
            }
        );
        assert_eq!(err.to_string(), "unknown verdict 9 for change 2");
    }

    #[test]
    fn rejects_a_bad_length() {
        // A text cell announcing 5 bytes with 2 behind it.
        let err = spans(&[1, 0, 0, 0, 1, 2, 2, 5, 0, 0, 0, b'a', b'b'], 1).unwrap_err();
        assert_eq!(
            err,
            WireError::BadLength {
                len: 5,
                at: 7,
                left: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "bad length 5 at byte 7: only 2 bytes follow"
        );
        // An error message announcing 4 GiB.
        assert_eq!(
            verdicts(&[3, 255, 255, 255, 255], 1, 0).unwrap_err(),
            WireError::BadLength {
                len: u32::MAX as usize,
                at: 1,
                left: 0
            }
        );
    }

    #[test]
    fn rejects_a_count_mismatch() {
        // Two verdicts where one was expected.
        let err = verdicts(&[0, 2], 1, 1).unwrap_err();
        assert_eq!(
            err,
            WireError::CountMismatch {
                count: 1,
                items: "verdicts",
                extra: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "1 bytes left after 1 verdicts (wrong row width or count)"
        );
        // A row one cell wider than decoded.
        let buf = [1, 0, 0, 0, 1, 2, 0, 0];
        assert_eq!(spans(&buf, 2).unwrap().len(), 1);
        assert_eq!(
            spans(&buf, 1).unwrap_err(),
            WireError::CountMismatch {
                count: 1,
                items: "changes",
                extra: 1
            }
        );
    }

    #[test]
    fn op_codes() {
        for op in Op::ALL {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
        assert_eq!(Op::from_code(4), None);
    }
}
