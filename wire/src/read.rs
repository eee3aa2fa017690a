//! A bounds-checked cursor over an input buffer: every read fails cleanly instead of panicking.

use crate::{CellSpan, WireError, FLAG_NEW, FLAG_OLD, TAG_NULL, TAG_TEXT, TAG_UNCHANGED};

/// Rows decoded into the caller's cell type: the old one and the new one, when present.
pub(crate) type Rows<C> = (Option<Vec<C>>, Option<Vec<C>>);

/// The input and how far it has been read.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The error for a field of `needed` bytes that does not fit in what is left.
    #[cold]
    fn truncated(&self, what: &'static str, needed: usize) -> WireError {
        WireError::Truncated {
            what,
            at: self.pos,
            needed,
            left: self.left(),
        }
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(what, 1)),
        }
    }

    /// A little-endian `u32`.
    #[inline]
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<usize, WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.first_chunk::<4>() {
            Some(b) => {
                self.pos += 4;
                Ok(u32::from_le_bytes(*b) as usize)
            }
            None => Err(self.truncated(what, 4)),
        }
    }

    /// A `u32` length, then that many bytes: returns their range.
    #[inline]
    pub(crate) fn span(&mut self, what: &'static str) -> Result<(usize, usize), WireError> {
        let len = self.u32(what)?;
        let start = self.pos;
        if len > self.left() {
            return Err(self.bad_length(len));
        }
        self.pos = start + len;
        Ok((start, self.pos))
    }

    /// The error for a length prefix, just read, that runs past the end.
    #[cold]
    fn bad_length(&self, len: usize) -> WireError {
        WireError::BadLength {
            len,
            at: self.pos - 4,
            left: self.left(),
        }
    }

    /// A `u32` length, then that much text (invalid UTF-8 replaced).
    pub(crate) fn text(&mut self, what: &'static str) -> Result<String, WireError> {
        let (start, end) = self.span(what)?;
        Ok(String::from_utf8_lossy(&self.buf[start..end]).into_owned())
    }

    /// One row of `width` cells, each converted by `cell`.
    ///
    /// The position lives in a local while the row is read: the caller's conversion and the
    /// row's growth are calls the compiler cannot see through.
    fn row<C>(
        &mut self,
        width: usize,
        cell: &mut impl FnMut(CellSpan) -> C,
    ) -> Result<Vec<C>, WireError> {
        let buf = self.buf;
        let mut pos = self.pos;
        // Every cell takes at least one byte: never reserve more than the input can fill.
        let mut row = Vec::with_capacity(width.min(buf.len() - pos));
        for _ in 0..width {
            let span = match buf.get(pos) {
                Some(&TAG_NULL) => {
                    pos += 1;
                    CellSpan::Null
                }
                Some(&TAG_UNCHANGED) => {
                    pos += 1;
                    CellSpan::Unchanged
                }
                Some(&TAG_TEXT) => {
                    let head = buf.get(pos + 1..).and_then(|rest| rest.first_chunk::<4>());
                    let Some(&head) = head else {
                        self.pos = pos + 1;
                        return Err(self.truncated("a text length", 4));
                    };
                    let len = u32::from_le_bytes(head) as usize;
                    let start = pos + 5;
                    if len > buf.len() - start {
                        self.pos = start;
                        return Err(self.bad_length(len));
                    }
                    pos = start + len;
                    CellSpan::Text { start, end: pos }
                }
                Some(&tag) => return Err(WireError::UnknownTag { tag, at: pos }),
                None => {
                    self.pos = pos;
                    return Err(self.truncated("a cell tag", 1));
                }
            };
            row.push(cell(span));
        }
        self.pos = pos;
        Ok(row)
    }

    /// Presence flags, then the old row and the new row that they announce.
    pub(crate) fn rows<C>(
        &mut self,
        width: usize,
        cell: &mut impl FnMut(CellSpan) -> C,
    ) -> Result<Rows<C>, WireError> {
        let flags = self.u8("the row flags")?;
        let old = if flags & FLAG_OLD != 0 {
            Some(self.row(width, cell)?)
        } else {
            None
        };
        let new = if flags & FLAG_NEW != 0 {
            Some(self.row(width, cell)?)
        } else {
            None
        };
        Ok((old, new))
    }

    /// Fails if bytes are left after `count` items.
    #[inline]
    pub(crate) fn finish(&self, count: usize, items: &'static str) -> Result<(), WireError> {
        match self.left() {
            0 => Ok(()),
            extra => Err(WireError::CountMismatch {
                count,
                items,
                extra,
            }),
        }
    }
}
