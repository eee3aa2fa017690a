// The pgmorph plugin SDK for JavaScript: write a table and row transform as a class, build it
// into a WebAssembly component with `sdk-js/build.sh`, drop the `.wasm` into pgmorph's plugin
// directory. Every method of `Plugin` defaults to pass-through; test a plugin natively with
// `TestHost` from `@pgmorph/plugin/testing`.

import { Mapping } from './schema.js';
import { KEEP } from './row.js';

export { Config } from './config.js';
export { InvalidConfig, PluginError, Unsupported } from './errors.js';
export { Change, KEEP, Op, Row, SKIP } from './row.js';
export { COMPUTED, Column, Mapping, Table, TableSchema, TypeClass, classOfSql } from './schema.js';
export { UNCHANGED } from './wire.js';

/** A pgmorph plugin: reshapes tables and, if asked, rows. The constructor receives the `Config`. */
export class Plugin {
  constructor(config) {
    this.config = config;
  }

  /** Where a table lands and whether the plugin sees its rows (default: as it is, no rows). */
  mapTable(table) {
    return Mapping.fromSchema(table);
  }

  /** Transforms one change: set values on its rows and return KEEP, or return SKIP; throwing
   *  hands the change to the plugin's `on_error` policy. */
  transformRow(table, change) {
    return KEEP;
  }
}

export const Level = Object.freeze({ TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' });

const sinks = [(level, message) => console.error(`[plugin ${level}] ${message}`)];

/** Writes a line to pgmorph's log (natively: to stderr and to `TestHost.logs()`). */
export function log(level, message) {
  sinks[sinks.length - 1](level, String(message));
}

/** Where `log` writes; the component adapter and the test host push theirs. */
export const logSinks = sinks;
