"""Native tests of `{{name}}`: `./test.sh` (python3 -m unittest with the SDK on PYTHONPATH)."""

import unittest

from pgmorph_plugin import Column, Op, TableSchema
from pgmorph_plugin.testing import Kept, TestHost

from plugin import {{type_name}}

USERS = TableSchema("public", "users", [Column("id", "int").key(), Column("name", "text")])


class {{type_name}}Test(unittest.TestCase):
    def test_upper_cases_the_configured_columns(self):
        host = TestHost({{type_name}}, {"columns": ["name"]})
        try:
            out = host.transform(USERS, Op.INSERT, None, {"id": "1", "name": "ada"})
            self.assertEqual(out, Kept(None, {"id": "1", "name": "ADA"}))
        finally:
            host.close()

    def test_asks_for_no_rows_without_columns(self):
        host = TestHost({{type_name}})
        try:
            self.assertIsNone(host.map_table(USERS).rows)
        finally:
            host.close()


if __name__ == "__main__":
    unittest.main()
