"""Rows and changes as the row hook sees them: cells addressed by column name, read and written
through typed accessors over PostgreSQL's text form."""

import json
import math
from enum import Enum, IntEnum

from .errors import Error, Unsupported
from .wire import UNCHANGED


class Op(IntEnum):
    """What happened to a row (values are the wire codes)."""

    SNAPSHOT = 0
    INSERT = 1
    UPDATE = 2
    DELETE = 3


class Verdict(Enum):
    """What becomes of a change: kept (with any values the hook set) or skipped."""

    KEEP = "keep"
    SKIP = "skip"


KEEP = Verdict.KEEP
SKIP = Verdict.SKIP


class Row:
    """One row: a cell per column the mapping asked for. Cells are `None` (NULL), `UNCHANGED`,
    a `memoryview` of the batch (as decoded) or a `str` (once set)."""

    __slots__ = ("columns", "_index", "cells", "modified")

    def __init__(self, columns, index, cells):
        self.columns = columns
        self._index = index
        self.cells = cells
        self.modified = False

    def _at(self, name):
        i = self._index.get(name)
        if i is None:
            raise Error(f"column {name!r} is not in the row (ask for it in Mapping.want_rows)")
        return i

    def is_null(self, name):
        return self.cells[self._at(name)] is None

    def is_unchanged(self, name):
        """Whether the column holds an unchanged TOAST value the source did not send."""
        return self.cells[self._at(name)] is UNCHANGED

    def get_str(self, name):
        cell = self.cells[self._at(name)]
        if cell is None or isinstance(cell, str):
            return cell
        if cell is UNCHANGED:
            raise Error(f"column {name!r} is an unchanged TOAST value the source did not send")
        try:
            return str(cell, "utf-8")
        except UnicodeDecodeError:
            raise Error(f"column {name!r} is not UTF-8") from None

    def _parse(self, name, parse, what):
        s = self.get_str(name)
        if s is None:
            return None
        try:
            return parse(s.strip())
        except ValueError:
            raise Error(f"column {name!r}: {s!r} is not {what}") from None

    def get_int(self, name):
        return self._parse(name, int, "an integer")

    def get_float(self, name):
        return self._parse(name, float, "a number")

    def get_bool(self, name):
        s = self.get_str(name)
        if s is None:
            return None
        if s in ("t", "true"):
            return True
        if s in ("f", "false"):
            return False
        raise Error(f"column {name!r}: {s!r} is not a boolean")

    def get_bytes(self, name):
        """A `bytea` value (hex output form) as bytes."""
        s = self.get_str(name)
        if s is None:
            return None
        if not s.startswith("\\x"):
            raise Error(f"column {name!r} is not hex bytea")
        try:
            return bytes.fromhex(s[2:])
        except ValueError:
            raise Error(f"column {name!r} is not hex bytea") from None

    def get_json(self, name):
        s = self.get_str(name)
        if s is None:
            return None
        try:
            return json.loads(s)
        except ValueError as e:
            raise Error(f"column {name!r} is not JSON: {e}") from None

    def get_array(self, name):
        """A one-dimensional array literal as a list of `str` or `None` elements."""
        s = self.get_str(name)
        if s is None:
            return None
        elements = parse_array(s)
        if elements is None:
            raise Unsupported(f"column {name!r}: {s!r} is not a one-dimensional array literal")
        return elements

    def set_str(self, name, value):
        self.cells[self._at(name)] = str(value)
        self.modified = True

    def set_null(self, name):
        self.cells[self._at(name)] = None
        self.modified = True

    def set_int(self, name, value):
        self.set_str(name, str(int(value)))

    def set_float(self, name, value):
        if math.isnan(value):
            text = "NaN"
        elif math.isinf(value):
            text = "Infinity" if value > 0 else "-Infinity"
        else:
            text = repr(float(value))
        self.set_str(name, text)

    def set_bool(self, name, value):
        self.set_str(name, "t" if value else "f")

    def set_bytes(self, name, value):
        self.set_str(name, "\\x" + bytes(value).hex())

    def set_json(self, name, value):
        self.set_str(name, json.dumps(value, separators=(",", ":")))

    def set_array(self, name, elements):
        parts = []
        for e in elements:
            if e is None:
                parts.append("NULL")
            else:
                parts.append('"' + str(e).replace("\\", "\\\\").replace('"', '\\"') + '"')
        self.set_str(name, "{" + ",".join(parts) + "}")


class Change:
    """One change: its operation and the old and new rows that are present."""

    __slots__ = ("op", "old", "new")

    def __init__(self, op, old, new):
        self.op = op
        self.old = old
        self.new = new

    def row(self):
        """The new row, or the old one for deletes."""
        return self.new if self.new is not None else self.old

    def rows(self):
        """The rows present (old first), e.g. to mask both sides of an update."""
        return [r for r in (self.old, self.new) if r is not None]


def parse_array(text):
    """The elements of a one-dimensional array literal, or None if it is not one."""
    t = text.strip()
    if not (t.startswith("{") and t.endswith("}")):
        return None
    inner, out, i = t[1:-1], [], 0
    if not inner:
        return out
    while True:
        if i < len(inner) and inner[i] == '"':
            i += 1
            e = []
            while True:
                if i >= len(inner):
                    return None
                ch = inner[i]
                if ch == "\\":
                    if i + 1 >= len(inner):
                        return None
                    e.append(inner[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    e.append(ch)
                    i += 1
            out.append("".join(e))
        else:
            start = i
            while i < len(inner) and inner[i] != ",":
                if inner[i] in '{"':
                    return None
                i += 1
            e = inner[start:i]
            out.append(None if e == "NULL" else e)
        if i >= len(inner):
            return out
        if inner[i] != ",":
            return None
        i += 1
