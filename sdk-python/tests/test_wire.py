"""The pure-Python codec against bytes written by the Rust codec (`wire/fixtures/`, checked by
`wire/tests/sdk_fixtures.rs`): it decodes them to what `cases.json` says, encodes that back to
the same bytes, and rejects malformed input with the Rust decoder's exact message."""

import json
import pathlib
import unittest

from pgmorph_plugin import wire

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "wire" / "fixtures"
CASES = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))


def cell_to_json(cell):
    if cell is None:
        return None
    if cell is wire.UNCHANGED:
        return {"unchanged": True}
    return str(cell, "utf-8")


def cell_from_json(cell):
    return wire.UNCHANGED if isinstance(cell, dict) else cell


def row_to_json(row):
    return None if row is None else [cell_to_json(c) for c in row]


def row_from_json(row):
    return None if row is None else [cell_from_json(c) for c in row]


class WireFixtureTest(unittest.TestCase):
    def test_decodes_the_rust_batch(self):
        case = CASES["batch"]
        changes = wire.decode_batch((FIXTURES / "batch.bin").read_bytes(), case["width"])
        got = [{"op": op, "old": row_to_json(old), "new": row_to_json(new)}
               for op, old, new in changes]
        self.assertEqual(got, case["changes"])

    def test_encodes_the_rust_batch(self):
        changes = [(c["op"], row_from_json(c["old"]), row_from_json(c["new"]))
                   for c in CASES["batch"]["changes"]]
        self.assertEqual(wire.encode_batch(changes), (FIXTURES / "batch.bin").read_bytes())

    def test_verdicts_round_trip_the_rust_bytes(self):
        case = CASES["verdicts"]
        out = bytearray()
        for v in case["verdicts"]:
            if "keep" in v:
                wire.write_keep(out)
            elif "skip" in v:
                wire.write_skip(out)
            elif "error" in v:
                wire.write_error(out, v["error"])
            elif "route" in v:
                wire.write_route(out, v["route"])
            else:
                m = v["modified"]
                wire.write_modified(out, row_from_json(m["old"]), row_from_json(m["new"]))
        data = (FIXTURES / "verdicts.bin").read_bytes()
        self.assertEqual(bytes(out), data)
        decoded = wire.decode_verdicts(data, case["count"], case["width"])
        self.assertEqual([v[0] for v in decoded], [0, 1, 1, 2, 3, 4])
        self.assertEqual(row_to_json(decoded[2][1]), ["a", {"unchanged": True}])
        self.assertEqual(decoded[4][1], case["verdicts"][4]["error"])

    def test_rejects_malformed_input_as_rust_does(self):
        for case in CASES["errors"]:
            with self.subTest(case=case):
                with self.assertRaises(wire.WireError) as caught:
                    if case["decode"] == "batch":
                        wire.decode_batch(bytes(case["bytes"]), case["width"])
                    else:
                        wire.decode_verdicts(bytes(case["bytes"]), case["count"], case["width"])
                self.assertEqual(str(caught.exception), case["error"])


if __name__ == "__main__":
    unittest.main()
