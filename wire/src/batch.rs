//! The row batch the host sends to a plugin's row hook.

use crate::read::Reader;
use crate::{put_rows, put_u32, CellRef, CellSpan, Op, WireError};

/// Starts a batch: appends the number of changes that follow.
#[inline]
pub fn write_count(out: &mut Vec<u8>, count: usize) {
    put_u32(out, count);
}

/// Appends one change: its operation, which rows are present, then their cells.
///
/// Each row must yield one cell per column the plugin asked for, in order.
pub fn write_change<'c, O, N>(out: &mut Vec<u8>, op: Op, old: Option<O>, new: Option<N>)
where
    O: IntoIterator<Item = CellRef<'c>>,
    N: IntoIterator<Item = CellRef<'c>>,
{
    out.push(op.code());
    put_rows(out, old, new);
}

/// Decodes a whole batch whose rows have `width` cells.
///
/// `cell` turns each decoded cell into the caller's cell type, `change` turns each change into
/// the caller's change type; the changes are returned in order. Bytes left after the announced
/// number of changes are an error.
pub fn decode_batch<C, T>(
    buf: &[u8],
    width: usize,
    mut cell: impl FnMut(CellSpan) -> C,
    mut change: impl FnMut(Op, Option<Vec<C>>, Option<Vec<C>>) -> T,
) -> Result<Vec<T>, WireError> {
    let mut r = Reader::new(buf);
    let count = r.u32("the change count")?;
    // Every change takes at least two bytes (op and flags).
    let mut changes = Vec::with_capacity(count.min(r.left() / 2));
    for i in 0..count {
        let code = r.u8("an operation")?;
        let op = Op::from_code(code).ok_or(WireError::UnknownOp {
            op: code,
            change: i,
        })?;
        let (old, new) = r.rows(width, &mut cell)?;
        changes.push(change(op, old, new));
    }
    r.finish(count, "changes")?;
    Ok(changes)
}
