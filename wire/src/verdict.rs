//! The verdicts a plugin's row hook returns, one per change of the batch.

use crate::read::Reader;
use crate::{put_bytes, put_rows, CellRef, CellSpan, WireError};

const KEEP: u8 = 0;
const KEEP_MODIFIED: u8 = 1;
const SKIP: u8 = 2;
const ERROR: u8 = 3;
const ROUTE: u8 = 4;

/// What the plugin decided for one change; `R` is the caller's row type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<R> {
    /// Keep the change as it is.
    Keep,
    /// Keep it with these rows (present exactly where the change had them).
    Modified {
        /// The old row.
        old: Option<R>,
        /// The new row.
        new: Option<R>,
    },
    /// Filter the change out.
    Skip,
    /// The row hook failed on this change, with this message.
    Error(String),
    /// Send the change to another table (`schema.table`); reserved.
    Route(String),
}

/// Appends "keep unchanged".
#[inline]
pub fn write_keep(out: &mut Vec<u8>) {
    out.push(KEEP);
}

/// Appends "keep with these rows"; each row yields one cell per row column, in order.
pub fn write_modified<'c, O, N>(out: &mut Vec<u8>, old: Option<O>, new: Option<N>)
where
    O: IntoIterator<Item = CellRef<'c>>,
    N: IntoIterator<Item = CellRef<'c>>,
{
    out.push(KEEP_MODIFIED);
    put_rows(out, old, new);
}

/// Appends "skip".
#[inline]
pub fn write_skip(out: &mut Vec<u8>) {
    out.push(SKIP);
}

/// Appends an error for this change.
#[inline]
pub fn write_error(out: &mut Vec<u8>, message: &str) {
    out.push(ERROR);
    put_bytes(out, message.as_bytes());
}

/// Appends a route to another table (reserved: the 0.1 host rejects it).
#[inline]
pub fn write_route(out: &mut Vec<u8>, table: &str) {
    out.push(ROUTE);
    put_bytes(out, table.as_bytes());
}

/// Decodes exactly `count` verdicts whose rows have `width` cells, turning each cell into the
/// caller's type with `cell`. Bytes left after the last verdict are an error.
pub fn decode_verdicts<C>(
    buf: &[u8],
    count: usize,
    width: usize,
    mut cell: impl FnMut(CellSpan) -> C,
) -> Result<Vec<Verdict<Vec<C>>>, WireError> {
    let mut r = Reader::new(buf);
    // Every verdict takes at least one byte.
    let mut verdicts = Vec::with_capacity(count.min(r.left()));
    for i in 0..count {
        let verdict = match r.u8("a verdict")? {
            KEEP => Verdict::Keep,
            KEEP_MODIFIED => {
                let (old, new) = r.rows(width, &mut cell)?;
                Verdict::Modified { old, new }
            }
            SKIP => Verdict::Skip,
            ERROR => Verdict::Error(r.text("an error message")?),
            ROUTE => Verdict::Route(r.text("a route")?),
            verdict => return Err(WireError::UnknownVerdict { verdict, change: i }),
        };
        verdicts.push(verdict);
    }
    r.finish(count, "verdicts")?;
    Ok(verdicts)
}
