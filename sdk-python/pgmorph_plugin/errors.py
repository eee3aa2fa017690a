"""The errors a plugin raises: the kind tells the operator what to fix."""


class Error(Exception):
    """Any other failure (the WIT `failed` case)."""

    kind = "failed"

    @property
    def message(self):
        return str(self.args[0]) if self.args else ""

    def display(self):
        """The text the host records, as the Rust SDK formats it."""
        return self.message


class InvalidConfig(Error):
    """The plugin's configuration is wrong (the operator must fix the config)."""

    kind = "invalid-config"

    def display(self):
        return f"invalid plugin config: {self.message}"


class Unsupported(Error):
    """The table or value is something the plugin cannot handle."""

    kind = "unsupported"

    def display(self):
        return f"unsupported: {self.message}"


Failed = Error
