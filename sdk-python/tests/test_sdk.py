"""The mapping builder, typed row accessors and native test host of the Python SDK."""

import unittest

from pgmorph_plugin import (COMPUTED, KEEP, SKIP, Column, Error, Mapping, Op, Plugin, TableSchema,
                            TypeClass, Unsupported)
from pgmorph_plugin.testing import Failed, Kept, Skipped, TestHost

ORDERS = TableSchema("public", "orders", [Column("id", "bigint").key(), Column("email", "text"),
                                          Column("n", "numeric(12,2)"), Column("tags", "text[]")])


class Everything(Plugin):
    """Exercises every accessor: doubles `n`, adds `tag_count`, skips `email = 'skip'`."""

    def map_table(self, table):
        m = Mapping.from_schema(table).rename_table("sales", "orders_v2")
        m.rename_column("email", "mail").set_type("n", "float8")
        return m.add_column("tag_count", "int").want_rows(["id", "mail", "n", "tags"])

    def transform_row(self, table, change):
        row = change.row()
        if row.get_str("mail") == "skip":
            return SKIP
        if row.get_str("mail") == "boom":
            raise Unsupported("no boom")
        if row.get_str("mail") == "bug":
            return 1 / 0
        row.set_float("n", row.get_float("n") * 2)
        row.set_int("tag_count", len(row.get_array("tags") or []))
        return KEEP


class SdkTest(unittest.TestCase):
    def test_classifies_sql_types_as_the_wire_crate(self):
        self.assertEqual(TypeClass.of_sql("numeric(12,2)")[0], TypeClass.NUMERIC)
        self.assertEqual(TypeClass.of_sql("timestamp(3) with time zone")[0], TypeClass.TIMESTAMPTZ)
        self.assertEqual(TypeClass.of_sql("integer[]"), (TypeClass.ARRAY, TypeClass.INTEGER))
        self.assertEqual(TypeClass.of_sql('"sales"."mood"')[0], TypeClass.OTHER)
        self.assertEqual(TypeClass.of_sql("  Character   Varying(20) "), (TypeClass.TEXT, None))

    def test_builds_mappings(self):
        m = Mapping.from_schema(ORDERS).rename_table("sales", "orders_v2").want_rows(["email"])
        m.rename_column("email", "mail")
        self.assertEqual(m.rows, ["mail"])
        with self.assertRaisesRegex(Unsupported, "key column"):
            m.drop_column("id")
        m.drop_column("tags").add_column("k", "int")
        self.assertEqual([c.name for c in m.columns], ["id", "mail", "n", "k"])
        self.assertEqual(m.column("k").source, COMPUTED)
        self.assertEqual(m.rows, ["mail", "k"])
        with self.assertRaisesRegex(Unsupported, "no column 'nope'"):
            m.set_type("nope", "int")
        self.assertTrue(Mapping.skip_table().skip)

    def test_runs_rows_natively(self):
        host = TestHost(Everything)
        m = host.map_table(ORDERS)
        self.assertEqual((m.schema, m.name), ("sales", "orders_v2"))
        out = host.transform(ORDERS, Op.INSERT, None,
                             {"id": "1", "mail": "a", "n": "1.25", "tags": '{x,"y z",NULL}'})
        self.assertEqual(out, Kept(None, {"id": "1", "mail": "a", "n": "2.5",
                                          "tags": '{x,"y z",NULL}', "tag_count": "3"}))
        self.assertEqual(host.transform(ORDERS, Op.INSERT, None, {"id": "2", "mail": "skip"}),
                         Skipped())
        self.assertEqual(host.transform(ORDERS, Op.INSERT, None, {"id": "3", "mail": "boom"}),
                         Failed("unsupported: no boom"))
        self.assertEqual(host.transform(ORDERS, Op.INSERT, None, {"id": "4", "mail": "bug"}),
                         Failed("ZeroDivisionError: division by zero"))

    def test_typed_accessors(self):
        from pgmorph_plugin.row import Row
        from pgmorph_plugin.wire import UNCHANGED

        names = ["n", "b", "f", "a", "j", "t", "u"]
        row = Row(None, {n: i for i, n in enumerate(names)},
                  [memoryview(b"42"), memoryview(b"\\x0aff"), None, None, memoryview(b'{"k":[1]}'),
                   memoryview(b"t"), UNCHANGED])
        self.assertEqual(row.get_int("n"), 42)
        self.assertEqual(row.get_bytes("b"), b"\x0a\xff")
        self.assertEqual(row.get_json("j"), {"k": [1]})
        self.assertIs(row.get_bool("t"), True)
        self.assertTrue(row.is_unchanged("u"))
        with self.assertRaisesRegex(Error, "unchanged TOAST"):
            row.get_str("u")
        self.assertFalse(row.modified)
        row.set_float("f", float("inf"))
        self.assertEqual(row.get_str("f"), "Infinity")
        row.set_float("f", 0.1)
        self.assertEqual(row.get_float("f"), 0.1)
        row.set_array("a", ['x,y', None, 'q"'])
        self.assertEqual(row.get_array("a"), ["x,y", None, 'q"'])
        row.set_bytes("b", b"\x00\x10")
        self.assertEqual(row.get_str("b"), "\\x0010")
        self.assertTrue(row.modified)
        with self.assertRaisesRegex(Error, "not in the row"):
            row.get_str("missing")


if __name__ == "__main__":
    unittest.main()
