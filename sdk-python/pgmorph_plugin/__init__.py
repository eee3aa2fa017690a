"""The pgmorph plugin SDK for Python: write a table and row transform as a class, build it into a
WebAssembly component with `sdk-python/build.sh`, drop the `.wasm` into pgmorph's plugin
directory.

    from pgmorph_plugin import KEEP, Mapping, Plugin, export

    class Upper(Plugin):
        def map_table(self, table):
            mapping = Mapping.from_schema(table)
            if table.column("name"):
                mapping.want_rows(["name"])
            return mapping

        def transform_row(self, table, change):
            for row in change.rows():
                if not row.is_unchanged("name") and not row.is_null("name"):
                    row.set_str("name", row.get_str("name").upper())
            return KEEP

    export(Upper)

Every method of `Plugin` defaults to pass-through. Test a plugin natively with
`pgmorph_plugin.testing.TestHost`.
"""

import sys

from .config import Config
from .errors import Error, Failed, InvalidConfig, Unsupported
from .row import KEEP, SKIP, Change, Op, Row, Verdict
from .schema import COMPUTED, Column, MappedColumn, Mapping, Table, TableSchema, TypeClass
from .wire import UNCHANGED

__all__ = [
    "Plugin", "export", "exported", "log", "Config", "Error", "Failed", "InvalidConfig",
    "Unsupported", "KEEP", "SKIP", "Change", "Op", "Row", "Verdict", "COMPUTED", "Column",
    "MappedColumn", "Mapping", "Table", "TableSchema", "TypeClass", "UNCHANGED",
    "TRACE", "DEBUG", "INFO", "WARN", "ERROR",
]

TRACE, DEBUG, INFO, WARN, ERROR = 0, 1, 2, 3, 4
_LEVELS = ["trace", "debug", "info", "warn", "error"]


class Plugin:
    """A pgmorph plugin: reshapes tables and, if asked, rows. `__init__` receives the `Config`
    (called again after the host recovers from a trap)."""

    def __init__(self, config):
        self.config = config

    def map_table(self, table):
        """Decides where a table lands and whether the plugin sees its rows. The default keeps
        the table as it is and asks for no rows (so the plugin costs nothing per row)."""
        return Mapping.from_schema(table)

    def transform_row(self, table, change):
        """Transforms one change of a table whose mapping asked for rows: set values on its
        rows and return KEEP, or return SKIP; raising hands the change to `on_error`."""
        return KEEP


_exported = None


def export(plugin_class):
    """Makes `plugin_class` the component's plugin (the build script's adapter runs it)."""
    global _exported
    _exported = plugin_class
    return plugin_class


def exported():
    """The class given to `export`, or None."""
    return _exported


def _stderr_sink(level, message):
    print(f"[plugin {_LEVELS[level]}] {message}", file=sys.stderr)


_log_sinks = [_stderr_sink]


def log(level, message):
    """Writes a line to pgmorph's log (natively: to stderr and to `TestHost.logs()`)."""
    _log_sinks[-1](level, str(message))
