// Drives a plugin: keeps its per-table state, decodes batches into changes and encodes the
// verdicts. Used by the component adapter (`guest.js`) and by the Node test host.

import { PluginError } from './errors.js';
import { Change, KEEP, Row, SKIP } from './row.js';
import { Table } from './schema.js';
import * as wire from './wire.js';

export class Runtime {
  constructor(PluginClass, config) {
    this.plugin = new PluginClass(config);
    this.tables = new Map();
  }

  mapTable(id, schema) {
    const mapping = this.plugin.mapTable(schema);
    for (const r of mapping.rows ?? []) {
      if (!mapping.columns.some((c) => c.name === r)) {
        throw new PluginError(`mapping of ${schema.qualifiedName()} asks for rows with column ${JSON.stringify(r)}, which it does not output`);
      }
    }
    const table = new Table(schema, mapping);
    const index = new Map(table.rowColumns.map((c, i) => [c.name, i]));
    this.tables.set(id, { table, index });
    return mapping;
  }

  transformRows(id, batch) {
    const entry = this.tables.get(id);
    if (!entry) throw new PluginError(`row batch for unknown table id ${id}`);
    const { table, index } = entry;
    const columns = table.rowColumns;
    let changes;
    try {
      changes = wire.decodeBatch(batch, columns.length);
    } catch (e) {
      throw new PluginError(`malformed row batch: ${e.message}`);
    }
    const w = new wire.Writer(changes.length + 16);
    for (const c of changes) {
      const change = new Change(c.op, c.old && new Row(columns, index, c.old), c.new && new Row(columns, index, c.new));
      let verdict;
      try {
        verdict = this.plugin.transformRow(table, change);
      } catch (e) {
        wire.writeError(w, e instanceof PluginError ? e.display() : `${e?.name ?? 'Error'}: ${e?.message ?? e}`);
        continue;
      }
      encodeVerdict(w, change, verdict);
    }
    return w.finish();
  }
}

function encodeVerdict(w, change, verdict) {
  if (verdict === SKIP) return wire.writeSkip(w);
  if (verdict !== undefined && verdict !== KEEP) {
    return wire.writeError(w, `transformRow returned ${String(verdict)}, not KEEP or SKIP`);
  }
  const { old, new: neu } = change;
  if (old?.modified || neu?.modified) return wire.writeModified(w, old?.cells ?? null, neu?.cells ?? null);
  return wire.writeKeep(w);
}
