"""Native tests of the Python `mask` example: `python3 -m unittest` in this directory (with
`sdk-python` on `PYTHONPATH`)."""

import hashlib
import unittest

from pgmorph_plugin import Column, InvalidConfig, Op, TableSchema
from pgmorph_plugin.testing import Kept, TestHost

from plugin import Mask

USERS = TableSchema("public", "u", [
    Column("email", "text").key(), Column("ssn", "text"), Column("n", "int"), Column("age", "int")])


class MaskTest(unittest.TestCase):
    def setUp(self):
        self.host = TestHost(Mask, {"salt": "s", "hash": ["*.email"],
                                    "redact": ["public.u.ssn", "*.age"]})

    def tearDown(self):
        self.host.close()

    def test_maps_masked_columns_only(self):
        m = self.host.map_table(USERS)
        self.assertEqual(m.rows, ["email", "ssn", "age"])
        self.assertEqual(m.column("age").type_sql, "text")
        self.assertEqual(m.column("n").type_sql, "int")

    def test_hashes_keys_stably_and_redacts(self):
        ins = self.host.transform(USERS, Op.INSERT, None, {"email": "a@b", "ssn": "1", "age": None})
        dele = self.host.transform(USERS, Op.DELETE, {"email": "a@b"}, None)
        want = hashlib.sha256(b"s\0a@b").hexdigest()
        self.assertEqual(ins, Kept(None, {"email": want, "ssn": "REDACTED", "age": None}))
        self.assertEqual(dele.old["email"], want)

    def test_refuses_a_redacted_key_and_unknown_keys(self):
        host = TestHost(Mask, {"redact": ["*.email"]})
        with self.assertRaisesRegex(InvalidConfig, "cannot be redacted"):
            host.map_table(USERS)
        with self.assertRaisesRegex(InvalidConfig, "unknown field `hsah`"):
            TestHost(Mask, {"hsah": []})
        with self.assertRaisesRegex(InvalidConfig, "needs a config"):
            TestHost(Mask, None)


if __name__ == "__main__":
    unittest.main()
