"""Table schemas a plugin receives and the mappings it returns (the mapping builder)."""

from enum import IntEnum

from .errors import Unsupported


class TypeClass(IntEnum):
    """How a column's values are shaped; values in the order of the WIT `type-class` enum."""

    BOOLEAN = 0
    INTEGER = 1
    FLOAT = 2
    NUMERIC = 3
    TEXT = 4
    BYTES = 5
    DATE = 6
    TIME = 7
    TIMESTAMP = 8
    TIMESTAMPTZ = 9
    INTERVAL = 10
    UUID = 11
    JSON = 12
    ARRAY = 13
    OTHER = 14

    @staticmethod
    def of_sql(type_sql):
        """The class of an SQL type name, with the element class for arrays (as `pgmorph-wire`)."""
        t = type_sql.strip()
        if t.endswith("[]"):
            return TypeClass.ARRAY, TypeClass.of_sql(t[:-2])[0]
        base, depth = [], 0
        for ch in t:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch != '"' and depth == 0:
                base.append(ch.lower() if ch.isascii() else ch)
        base = " ".join("".join(base).split())
        if base.startswith("pg_catalog."):
            base = base[len("pg_catalog."):]
        return _CLASSES.get(base, TypeClass.OTHER), None


_CLASSES = {}
for _class, _names in [
    (TypeClass.BOOLEAN, "boolean bool"),
    (TypeClass.INTEGER, "smallint integer int bigint int2 int4 int8 oid smallserial serial bigserial"),
    (TypeClass.FLOAT, "real|double precision|float4|float8|float"),
    (TypeClass.NUMERIC, "numeric decimal money"),
    (TypeClass.TEXT, "text|varchar|character varying|character|char|bpchar|name|citext"),
    (TypeClass.BYTES, "bytea"),
    (TypeClass.DATE, "date"),
    (TypeClass.TIME, "time|time without time zone|time with time zone|timetz"),
    (TypeClass.TIMESTAMP, "timestamp|timestamp without time zone"),
    (TypeClass.TIMESTAMPTZ, "timestamptz|timestamp with time zone"),
    (TypeClass.INTERVAL, "interval"),
    (TypeClass.UUID, "uuid"),
    (TypeClass.JSON, "json jsonb"),
]:
    for _name in _names.split("|") if "|" in _names else _names.split():
        _CLASSES[_name] = _class


class Column:
    """One column of a table as a plugin receives it."""

    __slots__ = ("name", "type_sql", "type_class", "element_class", "not_null", "is_key")

    def __init__(self, name, type_sql, not_null=False, is_key=False, type_class=None,
                 element_class=None):
        self.name = name
        self.type_sql = type_sql
        if type_class is None:
            type_class, element_class = TypeClass.of_sql(type_sql)
        self.type_class = type_class
        self.element_class = element_class
        self.not_null = not_null
        self.is_key = is_key

    def key(self):
        """Marks the column as a NOT NULL key column."""
        self.is_key = self.not_null = True
        return self

    def __repr__(self):
        return f"Column({self.name!r}, {self.type_sql!r}, key={self.is_key})"


class TableSchema:
    """A table as a plugin receives it: the source table after the earlier plugins."""

    def __init__(self, schema, name, columns):
        self.schema = schema
        self.name = name
        self.columns = list(columns)

    def column(self, name):
        """The column with this name, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def qualified_name(self):
        return f"{self.schema}.{self.name}"


COMPUTED = "computed"
"""`MappedColumn.source` of a column the row hook fills; otherwise the source is an input index."""


class MappedColumn:
    """One output column: `source` is the input column's index or `COMPUTED`."""

    __slots__ = ("name", "type_sql", "source", "not_null", "is_key")

    def __init__(self, name, type_sql, source, not_null=False, is_key=False):
        self.name = name
        self.type_sql = type_sql
        self.source = source
        self.not_null = not_null
        self.is_key = is_key

    def __eq__(self, other):
        return isinstance(other, MappedColumn) and all(
            getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __repr__(self):
        return f"MappedColumn({self.name!r}, {self.type_sql!r}, {self.source!r})"


class Mapping:
    """Where a table lands: built from the input schema, then reshaped with the builder methods
    (each returns the mapping, so calls chain)."""

    def __init__(self, schema, name, columns, rows=None, skip=False):
        self.skip = skip
        self.schema = schema
        self.name = name
        self.columns = columns
        self.rows = rows

    @classmethod
    def from_schema(cls, table):
        """The pass-through mapping: same names, same columns, no rows."""
        return cls(table.schema, table.name, [
            MappedColumn(c.name, c.type_sql, i, c.not_null, c.is_key)
            for i, c in enumerate(table.columns)
        ])

    @classmethod
    def skip_table(cls):
        """A mapping that drops the whole table."""
        return cls("", "", [], skip=True)

    def _index(self, column):
        for i, c in enumerate(self.columns):
            if c.name == column:
                return i
        raise Unsupported(f"table {self.schema}.{self.name} has no column {column!r}")

    def column(self, name):
        """The output column with this name."""
        return self.columns[self._index(name)]

    def rename_table(self, schema, name):
        self.schema, self.name = schema, name
        return self

    def rename_column(self, old, new):
        self.column(old).name = new
        if self.rows is not None:
            self.rows = [new if r == old else r for r in self.rows]
        return self

    def set_type(self, column, type_sql):
        """Changes a column's SQL type (the destination casts the text value unless the row hook
        converts it)."""
        self.column(column).type_sql = type_sql
        return self

    def drop_column(self, column):
        """Drops a column. Key columns cannot be dropped (updates and deletes need them)."""
        i = self._index(column)
        if self.columns[i].is_key:
            raise Unsupported(
                f"column {column!r} of {self.schema}.{self.name} is a key column and cannot be dropped")
        del self.columns[i]
        if self.rows is not None:
            self.rows = [r for r in self.rows if r != column]
        return self

    def add_column(self, column, type_sql):
        """Adds a computed column, filled by the row hook (also added to the row columns)."""
        if any(c.name == column for c in self.columns):
            raise Unsupported(f"table {self.schema}.{self.name} already has a column {column!r}")
        self.columns.append(MappedColumn(column, type_sql, COMPUTED))
        return self.want_rows([column])

    def want_rows(self, columns):
        """Asks for the row hook with these output columns (added to any asked for before)."""
        wanted = list(self.rows or [])
        for c in columns:
            self._index(c)
            if c not in wanted:
                wanted.append(c)
        self.rows = wanted
        return self

    def want_all_rows(self):
        self.rows = [c.name for c in self.columns]
        return self


class Table:
    """A mapped table, as the row hook sees it: the input schema, the mapping, and the columns
    present in each row (in order, with their output types)."""

    def __init__(self, input, output):
        self.input = input
        self.output = output
        by_name = {c.name: c for c in output.columns}
        self.row_columns = [
            Column(by_name[n].name, by_name[n].type_sql, by_name[n].not_null, by_name[n].is_key)
            for n in (output.rows or []) if n in by_name
        ]
        self.qualified = input.qualified_name()

    def qualified_name(self):
        return self.qualified
