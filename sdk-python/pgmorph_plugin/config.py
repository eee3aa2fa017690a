"""The plugin's configuration: the connector config's `[plugins.<name>.config]` as JSON."""

import json

from .errors import InvalidConfig


class Config:
    """The parsed JSON value (`None` when no config is given)."""

    def __init__(self, value=None):
        self.value = value

    @classmethod
    def from_json(cls, text):
        try:
            return cls(json.loads(text))
        except ValueError as e:
            raise InvalidConfig(f"config is not JSON: {e}") from None

    def settings(self, defaults):
        """The config object merged over `defaults`; a key not in `defaults` is refused (as the
        Rust examples' `deny_unknown_fields`), so is a value of another JSON type."""
        value = {} if self.value is None else self.value
        if not isinstance(value, dict):
            raise InvalidConfig(f"expected a table, got {json.dumps(value)}")
        out = dict(defaults)
        for key, v in value.items():
            if key not in defaults:
                expected = ", ".join(f"`{k}`" for k in defaults)
                raise InvalidConfig(f"unknown field `{key}`, expected one of {expected}")
            if type(v) is not type(defaults[key]):
                raise InvalidConfig(f"`{key}` must be a {type(defaults[key]).__name__}")
            out[key] = v
        return out
