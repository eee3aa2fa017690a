"""Drives a plugin: keeps its per-table state, decodes batches into changes and encodes the
verdicts. Used by the component adapter (`guest`) and by the native `testing.TestHost`."""

from . import wire
from .errors import Error
from .row import KEEP, SKIP, Change, Row
from .schema import Table


class Runtime:
    """One plugin instance and the tables it mapped, by the host's table id."""

    def __init__(self, plugin_class, config):
        self.plugin = plugin_class(config)
        self.tables = {}

    def map_table(self, table_id, schema):
        mapping = self.plugin.map_table(schema)
        for r in mapping.rows or []:
            if not any(c.name == r for c in mapping.columns):
                raise Error(f"mapping of {schema.qualified_name()} asks for rows with column "
                            f"{r!r}, which it does not output")
        table = Table(schema, mapping)
        index = {c.name: i for i, c in enumerate(table.row_columns)}
        self.tables[table_id] = (table, index)
        return mapping

    def transform_rows(self, table_id, batch):
        entry = self.tables.get(table_id)
        if entry is None:
            raise Error(f"row batch for unknown table id {table_id}")
        table, index = entry
        columns = table.row_columns
        try:
            decoded = wire.decode_batch(batch, len(columns))
        except wire.WireError as e:
            raise Error(f"malformed row batch: {e}") from None
        out = bytearray()
        transform_row = self.plugin.transform_row
        for op, old, new in decoded:
            change = Change(op, None if old is None else Row(columns, index, old),
                            None if new is None else Row(columns, index, new))
            try:
                verdict = transform_row(table, change)
            except Error as e:
                wire.write_error(out, e.display())
                continue
            except Exception as e:  # a bug in the plugin: the row's on_error policy decides
                wire.write_error(out, f"{type(e).__name__}: {e}")
                continue
            _encode_verdict(out, change, verdict)
        return bytes(out)


def _encode_verdict(out, change, verdict):
    if verdict is SKIP:
        wire.write_skip(out)
        return
    if verdict is not None and verdict is not KEEP:
        wire.write_error(out, f"transform_row returned {verdict!r}, not KEEP or SKIP")
        return
    old, new = change.old, change.new
    if (old is not None and old.modified) or (new is not None and new.modified):
        wire.write_modified(out, None if old is None else old.cells,
                            None if new is None else new.cells)
    else:
        wire.write_keep(out)
