"""Runs a plugin natively (plain Python, no WebAssembly), through the same batch encoding the
host uses, so plugin authors test with `python -m unittest`.

    host = TestHost(Mask, {"salt": "s", "hash": ["*.email"]})
    users = TableSchema("public", "users", [Column("id", "int").key(), Column("email", "text")])
    out = host.transform(users, Op.INSERT, None, {"id": "1", "email": "a@b.c"})
    assert out == Kept(None, {"id": "1", "email": "<64 hex digits>"})
"""

import json
from dataclasses import dataclass
from typing import Optional

from . import _log_sinks, _stderr_sink, wire
from .config import Config
from .errors import Error
from .runtime import Runtime


@dataclass
class Kept:
    """The change is kept; rows (column name -> text or None) with the plugin's values."""

    old: Optional[dict]
    new: Optional[dict]


@dataclass
class Skipped:
    """The plugin filtered the change out."""


@dataclass
class Failed:
    """The plugin failed on the change; the plugin's `on_error` policy would decide."""

    message: str


class TestHost:
    """One plugin instance and the tables it mapped."""

    __test__ = False

    def __init__(self, plugin_class, config=None):
        self._logs = []
        _log_sinks.append(self._capture)
        self.runtime = Runtime(plugin_class, Config.from_json(json.dumps(config)))
        self.tables = {}

    def _capture(self, level, message):
        _stderr_sink(level, message)
        self._logs.append((level, message))

    def close(self):
        """Stops capturing log lines."""
        if self._capture in _log_sinks:
            _log_sinks.remove(self._capture)

    def logs(self):
        """Log lines written since the last call: `(level, message)`."""
        logs, self._logs = self._logs, []
        return logs

    def map_table(self, table):
        """Runs the mapping hook (again) for `table`; returns the mapping."""
        table_id = len(self.tables) + 1
        mapping = self.runtime.map_table(table_id, table)
        self.tables[table.qualified_name()] = (table_id, mapping)
        return mapping

    def transform(self, table, op, old=None, new=None):
        """Runs one change (rows as dicts by output column name) through the row hook."""
        if table.qualified_name() not in self.tables:
            self.map_table(table)
        table_id, mapping = self.tables[table.qualified_name()]
        if mapping.rows is None:
            return Kept(old, new)
        columns = mapping.rows

        def pick(row):
            return None if row is None else [row.get(c) for c in columns]

        batch = wire.encode_batch([(int(op), pick(old), pick(new))])
        out = self.runtime.transform_rows(table_id, batch)
        return _outcome(out, columns, old, new)


def _merge(base, columns, cells):
    merged = dict(base or {})
    for name, cell in zip(columns, cells):
        if cell is wire.UNCHANGED:
            continue
        merged[name] = None if cell is None else str(cell, "utf-8")
    return merged


def _outcome(out, columns, old, new):
    try:
        (verdict,) = wire.decode_verdicts(out, 1, len(columns))
    except wire.WireError as e:
        raise Error(f"malformed verdict: {e}") from None
    code = verdict[0]
    if code == wire.KEEP:
        return Kept(old, new)
    if code == wire.SKIP:
        return Skipped()
    if code == wire.ERROR:
        return Failed(verdict[1])
    if code == wire.MODIFIED:
        _, out_old, out_new = verdict
        return Kept(None if out_old is None else _merge(old, columns, out_old),
                    None if out_new is None else _merge(new, columns, out_new))
    raise Error(f"malformed verdict: a route to {verdict[1]!r}, which pgmorph does not support")
