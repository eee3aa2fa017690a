// The component side: adapts a plugin class to the `transform` export of the
// `pgmorph:plugin/plugin@0.1.0` world as componentize-js binds it. Imported only inside the
// component (by the app module `build.sh` writes); plugin code never imports it.

import { log as hostLog } from 'pgmorph:plugin/host@0.1.0';

import { Config } from './config.js';
import { InvalidConfig, PluginError, Unsupported } from './errors.js';
import { logSinks } from './index.js';
import { Runtime } from './runtime.js';
import { COMPUTED, Column, TableSchema } from './schema.js';

logSinks.push((level, message) => hostLog(level, message));

/** A thrown value componentize-js turns into the function's `err` result. */
class ComponentError extends Error {
  constructor(e) {
    super(e?.message ?? String(e));
    let tag = 'failed';
    if (e instanceof InvalidConfig) tag = 'invalid-config';
    else if (e instanceof Unsupported) tag = 'unsupported';
    const val = e instanceof PluginError ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
    this.payload = { tag, val };
  }
}

const call = (f) => {
  try {
    return f();
  } catch (e) {
    throw new ComponentError(e);
  }
};

const schemaFromWit = (s) => new TableSchema(s.schema, s.name, s.columns.map((c) => new Column(c.name, c.typeSql, {
  notNull: c.notNull, isKey: c.isKey, typeClass: c.typeClass, elementClass: c.elementClass ?? null,
})));

function mappingToWit(m) {
  if (m.skip) return { tag: 'skip' };
  return {
    tag: 'keep',
    val: {
      schema: m.schema,
      name: m.name,
      columns: m.columns.map((c) => ({
        name: c.name,
        typeSql: c.typeSql,
        source: c.source === COMPUTED ? { tag: 'computed' } : { tag: 'input', val: c.source },
        notNull: c.notNull,
        isKey: c.isKey,
      })),
      rows: m.rows === null ? { tag: 'none' } : { tag: 'columns', val: [...m.rows] },
    },
  };
}

/** The `transform` export for `PluginClass`. */
export function transformFor(PluginClass) {
  let runtime = null;
  const running = () => {
    if (!runtime) throw new PluginError('plugin called before init');
    return runtime;
  };
  return {
    init(config) {
      runtime = call(() => new Runtime(PluginClass, Config.fromJson(config)));
    },
    mapTable(table, schema) {
      return mappingToWit(call(() => running().mapTable(table, schemaFromWit(schema))));
    },
    transformRows(table, batch) {
      return call(() => running().transformRows(table, batch));
    },
  };
}
