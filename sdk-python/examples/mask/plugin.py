"""`mask` in Python: the same behaviour and config as the Rust example `plugins/mask`. PII
columns are replaced by a salted SHA-256 (hex) or by a redaction; hashing is deterministic, so a
hashed key column stays a stable key. Masked non-text columns become `text`.

    [plugins.30-mask.config]
    salt = "change-me"
    hash = ["public.users.email", "*.phone"]
    redact = ["public.users.ssn"]
    redaction = "REDACTED"    # default
"""

import hashlib

from pgmorph_plugin import (KEEP, InvalidConfig, Mapping, Plugin, TypeClass, export)

HASH, REDACT = "hash", "redact"


def matches(pattern, table, column):
    if pattern.startswith("*."):
        return pattern[2:] == column
    return pattern == f"{table}.{column}"


class Mask(Plugin):
    def __init__(self, config):
        if config.value is None:
            raise InvalidConfig("mask needs a config")
        self.settings = config.settings(
            {"salt": "", "hash": [], "redact": [], "redaction": "REDACTED"})
        self.salted = hashlib.sha256(self.settings["salt"].encode() + b"\0")
        self.masked = {}

    def map_table(self, table):
        qualified = table.qualified_name()
        mapping = Mapping.from_schema(table)
        masked = []
        for column in table.columns:
            def hit(patterns):
                return any(matches(p, qualified, column.name) for p in patterns)

            if hit(self.settings["hash"]):
                how = HASH
            elif hit(self.settings["redact"]):
                if column.is_key:
                    raise InvalidConfig(f"key column {qualified}.{column.name} cannot be redacted "
                                        "(rows would collide); hash it")
                how = REDACT
            else:
                continue
            if column.type_class not in (TypeClass.TEXT, TypeClass.OTHER):
                mapping.set_type(column.name, "text")
            masked.append((column.name, how))
        if masked:
            mapping.want_rows([name for name, _ in masked])
        self.masked[qualified] = masked
        return mapping

    def transform_row(self, table, change):
        masked = self.masked[table.qualified_name()]
        for row in change.rows():
            for column, how in masked:
                if row.is_unchanged(column) or row.is_null(column):
                    continue
                if how == HASH:
                    h = self.salted.copy()
                    h.update(row.get_str(column).encode())
                    row.set_str(column, h.hexdigest())
                else:
                    row.set_str(column, self.settings["redaction"])
        return KEEP


export(Mask)
