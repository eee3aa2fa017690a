"""`{{name}}`: upper-cases the text of the configured columns. A starting point: replace the
mapping and the row hook with your own.

    [plugins.{{name}}.config]
    columns = ["name"]          # columns to upper-case, in every table that has them
"""

from pgmorph_plugin import KEEP, Mapping, Plugin, export


class {{type_name}}(Plugin):
    def __init__(self, config):
        # config.value: [plugins.<stem>.config] as JSON; unknown keys are refused.
        self.settings = config.settings({"columns": []})

    def map_table(self, table):
        mapping = Mapping.from_schema(table)
        wanted = [c for c in self.settings["columns"] if table.column(c)]
        if wanted:
            # Only these columns cross per row; other tables cost nothing per row.
            mapping.want_rows(wanted)
        return mapping

    def transform_row(self, table, change):
        columns = [c.name for c in table.row_columns]
        for row in change.rows():
            for c in columns:
                if not row.is_unchanged(c) and not row.is_null(c):
                    row.set_str(c, row.get_str(c).upper())
        return KEEP


export({{type_name}})
