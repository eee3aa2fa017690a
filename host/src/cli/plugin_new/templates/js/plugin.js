// `{{name}}`: upper-cases the text of the configured columns. A starting point: replace the
// mapping and the row hook with your own.
//
//   [plugins.{{name}}.config]
//   columns = ["name"]          # columns to upper-case, in every table that has them

import { KEEP, Mapping, Plugin } from '@pgmorph/plugin';

export default class {{type_name}} extends Plugin {
  constructor(config) {
    super(config);
    // config.value: [plugins.<stem>.config] as JSON; unknown keys are refused.
    this.settings = config.settings({ columns: [] });
  }

  mapTable(table) {
    const mapping = Mapping.fromSchema(table);
    const wanted = this.settings.columns.filter((c) => table.column(c));
    // Only these columns cross per row; other tables cost nothing per row.
    if (wanted.length) mapping.wantRows(wanted);
    return mapping;
  }

  transformRow(table, change) {
    const columns = table.rowColumns.map((c) => c.name);
    for (const row of change.rows()) {
      for (const c of columns) {
        if (!row.isUnchanged(c) && !row.isNull(c)) row.setStr(c, row.getStr(c).toUpperCase());
      }
    }
    return KEEP;
  }
}
