// Runs a plugin natively in Node (no WebAssembly), through the same batch encoding the host
// uses, so plugin authors test with `node --test`.
//
//   const host = new TestHost(Mask, { salt: 's', hash: ['*.email'] });
//   const users = new TableSchema('public', 'users', [new Column('id', 'int').key(), new Column('email', 'text')]);
//   host.transform(users, Op.INSERT, null, { id: '1', email: 'a@b.c' });
//   // -> { kept: true, old: null, new: { id: '1', email: '<64 hex digits>' } }

import { Config } from './config.js';
import { logSinks } from './index.js';
import { PluginError } from './errors.js';
import { Runtime } from './runtime.js';
import * as wire from './wire.js';

export class TestHost {
  constructor(PluginClass, config = null) {
    this.captured = [];
    this.sink = (level, message) => {
      console.error(`[plugin ${level}] ${message}`);
      this.captured.push([level, message]);
    };
    logSinks.push(this.sink);
    this.runtime = new Runtime(PluginClass, Config.fromJson(JSON.stringify(config)));
    this.tables = new Map();
  }

  /** Stops capturing log lines. */
  close() {
    const i = logSinks.indexOf(this.sink);
    if (i >= 0) logSinks.splice(i, 1);
  }

  /** Log lines written since the last call: `[level, message]`. */
  logs() {
    const out = this.captured;
    this.captured = [];
    return out;
  }

  /** Runs the mapping hook (again) for `table`; returns the mapping. */
  mapTable(table) {
    const id = this.tables.size + 1;
    const mapping = this.runtime.mapTable(id, table);
    this.tables.set(table.qualifiedName(), { id, mapping });
    return mapping;
  }

  /**
   * Runs one change (rows as objects by output column name) through the row hook: returns
   * `{ kept: true, old, new }`, `{ skipped: true }` or `{ failed: message }`.
   */
  transform(table, op, old = null, neu = null) {
    if (!this.tables.has(table.qualifiedName())) this.mapTable(table);
    const { id, mapping } = this.tables.get(table.qualifiedName());
    if (!mapping.rows) return { kept: true, old, new: neu };
    const columns = mapping.rows;
    const pick = (row) => (row ? columns.map((c) => row[c] ?? null) : null);
    const batch = wire.encodeBatch([{ op, old: pick(old), new: pick(neu) }]);
    const out = this.runtime.transformRows(id, batch);
    return outcome(out, columns, old, neu);
  }
}

function merge(base, columns, cells) {
  const merged = { ...(base ?? {}) };
  columns.forEach((name, i) => {
    const cell = cells[i];
    if (cell === wire.UNCHANGED) return;
    merged[name] = cell === null ? null : wire.cellText(cell);
  });
  return merged;
}

function outcome(out, columns, old, neu) {
  let verdict;
  try {
    [verdict] = wire.decodeVerdicts(out, 1, columns.length);
  } catch (e) {
    throw new PluginError(`malformed verdict: ${e.message}`);
  }
  switch (verdict.code) {
    case wire.KEEP: return { kept: true, old, new: neu };
    case wire.SKIP: return { skipped: true };
    case wire.ERROR: return { failed: verdict.text };
    case wire.MODIFIED: return {
      kept: true,
      old: verdict.old && merge(old, columns, verdict.old),
      new: verdict.new && merge(neu, columns, verdict.new),
    };
    default: throw new PluginError(`malformed verdict: a route to ${JSON.stringify(verdict.text)}, which pgmorph does not support`);
  }
}
