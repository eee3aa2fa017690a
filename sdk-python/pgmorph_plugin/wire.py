"""The `transform-rows` wire format in pure Python: the row batch the host sends and the
verdicts a plugin returns, byte for byte as `pgmorph-wire` (the Rust crate the host uses)
writes and reads them. All integers are little-endian:

    batch:    u32 change count, then per change:
                u8 op (0 snapshot, 1 insert, 2 update, 3 delete)
                u8 flags (bit 0: old row present, bit 1: new row present)
                old row if present, then new row if present; a row is one cell per column:
                  u8 tag (0 null, 1 unchanged TOAST value, 2 text)
                  for text: u32 length, then that many bytes
    verdicts: one per change, in order:
                u8 0 keep unchanged
                u8 1 keep with new values: u8 flags, then the rows, encoded as in the batch
                u8 2 skip
                u8 3 error: u32 length + UTF-8 message
                u8 4 route: u32 length + `schema.table` (reserved)

A decoded cell is `None` (SQL NULL), `UNCHANGED` (an unchanged TOAST value the source did not
send) or a `memoryview` of the text's bytes in the decoded buffer (no copy). Decoding never
reads past the input and fails with a `WireError` naming the byte, as the Rust decoder does.
"""

import struct

__all__ = [
    "UNCHANGED", "WireError", "decode_batch", "encode_batch", "write_count", "write_change",
    "write_keep", "write_modified", "write_skip", "write_error", "write_route", "decode_verdicts",
    "KEEP", "MODIFIED", "SKIP", "ERROR", "ROUTE",
]

_U32 = struct.Struct("<I")

TAG_NULL, TAG_UNCHANGED, TAG_TEXT = 0, 1, 2
FLAG_OLD, FLAG_NEW = 1, 2
KEEP, MODIFIED, SKIP, ERROR, ROUTE = 0, 1, 2, 3, 4


class _Unchanged:
    """An unchanged TOAST value the source did not send: leave it alone."""

    __slots__ = ()

    def __repr__(self):
        return "UNCHANGED"


UNCHANGED = _Unchanged()


class WireError(ValueError):
    """Malformed bytes; the message matches the Rust decoder's."""


def _truncated(what, at, needed, left):
    return WireError(f"truncated at byte {at}: {what} needs {needed} bytes, {left} left")


class _Reader:
    __slots__ = ("buf", "view", "pos")

    def __init__(self, buf):
        self.buf = bytes(buf) if not isinstance(buf, (bytes, bytearray)) else buf
        self.view = memoryview(self.buf)
        self.pos = 0

    def left(self):
        return len(self.buf) - self.pos

    def u8(self, what):
        if self.pos >= len(self.buf):
            raise _truncated(what, self.pos, 1, 0)
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def u32(self, what):
        if self.left() < 4:
            raise _truncated(what, self.pos, 4, self.left())
        (n,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return n

    def text(self, what):
        n = self.u32(what)
        if n > self.left():
            raise WireError(f"bad length {n} at byte {self.pos - 4}: only {self.left()} bytes follow")
        start = self.pos
        self.pos += n
        return self.buf[start:self.pos].decode("utf-8", "replace")

    def row(self, width):
        buf, view, pos = self.buf, self.view, self.pos
        end_of_buf = len(buf)
        cells = []
        for _ in range(width):
            if pos >= end_of_buf:
                self.pos = pos
                raise _truncated("a cell tag", pos, 1, 0)
            tag = buf[pos]
            if tag == TAG_TEXT:
                if end_of_buf - pos - 1 < 4:
                    raise _truncated("a text length", pos + 1, 4, end_of_buf - pos - 1)
                (n,) = _U32.unpack_from(buf, pos + 1)
                start = pos + 5
                if n > end_of_buf - start:
                    raise WireError(
                        f"bad length {n} at byte {pos + 1}: only {end_of_buf - start} bytes follow"
                    )
                pos = start + n
                cells.append(view[start:pos])
            elif tag == TAG_NULL:
                pos += 1
                cells.append(None)
            elif tag == TAG_UNCHANGED:
                pos += 1
                cells.append(UNCHANGED)
            else:
                raise WireError(f"unknown cell tag {tag} at byte {pos}")
        self.pos = pos
        return cells

    def rows(self, width):
        flags = self.u8("the row flags")
        old = self.row(width) if flags & FLAG_OLD else None
        new = self.row(width) if flags & FLAG_NEW else None
        return old, new

    def finish(self, count, items):
        extra = self.left()
        if extra:
            raise WireError(f"{extra} bytes left after {count} {items} (wrong row width or count)")


def decode_batch(buf, width):
    """Decodes a batch whose rows have `width` cells: a list of `(op, old, new)` with op the
    code (0-3) and each row a list of cells, or None when absent."""
    r = _Reader(buf)
    count = r.u32("the change count")
    changes = []
    for i in range(count):
        op = r.u8("an operation")
        if op > 3:
            raise WireError(f"unknown operation {op} for change {i}")
        old, new = r.rows(width)
        changes.append((op, old, new))
    r.finish(count, "changes")
    return changes


def _cell_bytes(cell):
    if isinstance(cell, str):
        return cell.encode("utf-8")
    return cell


def _write_row(out, row):
    for cell in row:
        if cell is None:
            out.append(TAG_NULL)
        elif cell is UNCHANGED:
            out.append(TAG_UNCHANGED)
        else:
            data = _cell_bytes(cell)
            out.append(TAG_TEXT)
            out += _U32.pack(len(data))
            out += data


def _write_rows(out, old, new):
    out.append((FLAG_OLD if old is not None else 0) | (FLAG_NEW if new is not None else 0))
    if old is not None:
        _write_row(out, old)
    if new is not None:
        _write_row(out, new)


def write_count(out, count):
    """Starts a batch: appends the number of changes that follow."""
    out += _U32.pack(count)


def write_change(out, op, old, new):
    """Appends one change; cells are None, UNCHANGED, str or bytes-like."""
    out.append(op)
    _write_rows(out, old, new)


def encode_batch(changes):
    """A whole batch from `(op, old, new)` tuples."""
    out = bytearray()
    write_count(out, len(changes))
    for op, old, new in changes:
        write_change(out, op, old, new)
    return bytes(out)


def write_keep(out):
    out.append(KEEP)


def write_modified(out, old, new):
    out.append(MODIFIED)
    _write_rows(out, old, new)


def write_skip(out):
    out.append(SKIP)


def _write_text(out, code, text):
    data = text.encode("utf-8")
    out.append(code)
    out += _U32.pack(len(data))
    out += data


def write_error(out, message):
    _write_text(out, ERROR, message)


def write_route(out, table):
    _write_text(out, ROUTE, table)


def decode_verdicts(buf, count, width):
    """Decodes `count` verdicts: a list of `(KEEP,)`, `(MODIFIED, old, new)`, `(SKIP,)`,
    `(ERROR, message)` or `(ROUTE, table)`."""
    r = _Reader(buf)
    verdicts = []
    for i in range(count):
        code = r.u8("a verdict")
        if code == KEEP or code == SKIP:
            verdicts.append((code,))
        elif code == MODIFIED:
            verdicts.append((code,) + r.rows(width))
        elif code == ERROR:
            verdicts.append((code, r.text("an error message")))
        elif code == ROUTE:
            verdicts.append((code, r.text("a route")))
        else:
            raise WireError(f"unknown verdict {code} for change {i}")
    r.finish(count, "verdicts")
    return verdicts
