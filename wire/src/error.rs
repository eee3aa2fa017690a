//! Why a buffer is not a well-formed batch or verdict list.

use std::fmt;

/// A malformed batch or verdict list. Offsets are byte positions in the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The input ends inside a fixed-size field.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        at: usize,
        /// How many bytes the field needs.
        needed: usize,
        /// How many bytes were left.
        left: usize,
    },
    /// A cell tag other than null (0), unchanged (1) or text (2).
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Where the tag is.
        at: usize,
    },
    /// An operation code other than 0 to 3.
    UnknownOp {
        /// The code.
        op: u8,
        /// The index of the change.
        change: usize,
    },
    /// A verdict code other than 0 to 4.
    UnknownVerdict {
        /// The code.
        verdict: u8,
        /// The index of the change the verdict is for.
        change: usize,
    },
    /// A length prefix that runs past the end of the input.
    BadLength {
        /// The length read.
        len: usize,
        /// Where the length prefix is.
        at: usize,
        /// How many bytes were left after it.
        left: usize,
    },
    /// Bytes left over after the announced number of changes or verdicts: the count or the row
    /// width does not match what was encoded.
    CountMismatch {
        /// How many changes or verdicts were decoded.
        count: usize,
        /// `"changes"` or `"verdicts"`.
        items: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::Truncated {
                what,
                at,
                needed,
                left,
            } => write!(
                f,
                "truncated at byte {at}: {what} needs {needed} bytes, {left} left"
            ),
            WireError::UnknownTag { tag, at } => write!(f, "unknown cell tag {tag} at byte {at}"),
            WireError::UnknownOp { op, change } => {
                write!(f, "unknown operation {op} for change {change}")
            }
            WireError::UnknownVerdict { verdict, change } => {
                write!(f, "unknown verdict {verdict} for change {change}")
            }
            WireError::BadLength { len, at, left } => {
                write!(f, "bad length {len} at byte {at}: only {left} bytes follow")
            }
            WireError::CountMismatch {
                count,
                items,
                extra,
            } => write!(
                f,
                "{extra} bytes left after {count} {items} (wrong row width or count)"
            ),
        }
    }
}

impl std::error::Error for WireError {}
