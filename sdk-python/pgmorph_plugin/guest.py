"""The component side: adapts the class given to `pgmorph_plugin.export` to the
componentize-py bindings of the `pgmorph:plugin/plugin@0.1.0` world. Imported only inside the
component (the build script's `app` module does); plugin code never imports it."""

import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports import types as wit

from . import _log_sinks, exported
from .config import Config
from .errors import Error, InvalidConfig, Unsupported
from .runtime import Runtime
from .schema import COMPUTED, Column, TableSchema, TypeClass

_runtime = None


def _host_log(level, message):
    host.log(wit.Level(level), message)


_log_sinks.append(_host_log)


def _to_wit_error(e):
    if isinstance(e, InvalidConfig):
        return wit.PluginError_InvalidConfig(e.message)
    if isinstance(e, Unsupported):
        return wit.PluginError_Unsupported(e.message)
    if isinstance(e, Error):
        return wit.PluginError_Failed(e.message)
    return wit.PluginError_Failed("".join(traceback.format_exception_only(type(e), e)).strip())


def _schema_from_wit(s):
    return TableSchema(s.schema, s.name, [
        Column(c.name, c.type_sql, c.not_null, c.is_key, TypeClass(c.type_class.value),
               None if c.element_class is None else TypeClass(c.element_class.value))
        for c in s.columns
    ])


def _mapping_to_wit(m):
    if m.skip:
        return wit.TableMapping_Skip()
    columns = [
        wit.MappedColumn(
            c.name, c.type_sql,
            wit.ColumnSource_Computed() if c.source == COMPUTED else wit.ColumnSource_Input(c.source),
            c.not_null, c.is_key)
        for c in m.columns
    ]
    rows = wit.RowInterest_None_() if m.rows is None else wit.RowInterest_Columns(list(m.rows))
    return wit.TableMapping_Keep(wit.TableOutput(m.schema, m.name, columns, rows))


def _call(f, *args):
    try:
        return f(*args)
    except Exception as e:
        raise Err(_to_wit_error(e)) from None


def _running():
    if _runtime is None:
        raise Error("plugin called before init")
    return _runtime


class Transform(exports.Transform):
    """The exported `transform` interface."""

    def init(self, config: str) -> None:
        global _runtime
        plugin_class = exported()
        if plugin_class is None:
            raise Err(wit.PluginError_Failed("no plugin class: call pgmorph_plugin.export(MyPlugin)"))
        _runtime = _call(lambda: Runtime(plugin_class, Config.from_json(config)))

    def map_table(self, table: int, schema: wit.TableSchema) -> wit.TableMapping:
        mapping = _call(lambda: _running().map_table(table, _schema_from_wit(schema)))
        return _mapping_to_wit(mapping)

    def transform_rows(self, table: int, batch: bytes) -> bytes:
        return _call(lambda: _running().transform_rows(table, batch))
