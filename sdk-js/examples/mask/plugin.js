// `mask` in JavaScript: the same behaviour and config as the Rust example `plugins/mask`. PII
// columns are replaced by a salted SHA-256 (hex) or by a redaction; hashing is deterministic, so
// a hashed key column stays a stable key. Masked non-text columns become `text`.
//
//   [plugins.30-mask.config]
//   salt = "change-me"
//   hash = ["public.users.email", "*.phone"]
//   redact = ["public.users.ssn"]
//   redaction = "REDACTED"    # default

import { InvalidConfig, KEEP, Mapping, Plugin, TypeClass } from '@pgmorph/plugin';

import { sha256Hex } from './sha256.js';

const encoder = new TextEncoder();

const matches = (pattern, table, column) =>
  (pattern.startsWith('*.') ? pattern.slice(2) === column : pattern === `${table}.${column}`);

export default class Mask extends Plugin {
  constructor(config) {
    super(config);
    if (config.value === null) throw new InvalidConfig('mask needs a config');
    this.settings = config.settings({ salt: '', hash: [], redact: [], redaction: 'REDACTED' });
    this.salt = encoder.encode(`${this.settings.salt}\0`);
    this.masked = new Map();
  }

  hash(value) {
    const bytes = encoder.encode(value);
    const salted = new Uint8Array(this.salt.length + bytes.length);
    salted.set(this.salt);
    salted.set(bytes, this.salt.length);
    return sha256Hex(salted);
  }

  mapTable(table) {
    const qualified = table.qualifiedName();
    const mapping = Mapping.fromSchema(table);
    const masked = [];
    for (const column of table.columns) {
      const hit = (patterns) => patterns.some((p) => matches(p, qualified, column.name));
      let how;
      if (hit(this.settings.hash)) {
        how = 'hash';
      } else if (hit(this.settings.redact)) {
        if (column.isKey) {
          throw new InvalidConfig(`key column ${qualified}.${column.name} cannot be redacted (rows would collide); hash it`);
        }
        how = 'redact';
      } else {
        continue;
      }
      if (column.typeClass !== TypeClass.TEXT && column.typeClass !== TypeClass.OTHER) {
        mapping.setType(column.name, 'text');
      }
      masked.push([column.name, how]);
    }
    if (masked.length) mapping.wantRows(masked.map(([name]) => name));
    this.masked.set(qualified, masked);
    return mapping;
  }

  transformRow(table, change) {
    const masked = this.masked.get(table.qualifiedName());
    for (const row of change.rows()) {
      for (const [column, how] of masked) {
        if (row.isUnchanged(column) || row.isNull(column)) continue;
        row.setStr(column, how === 'hash' ? this.hash(row.getStr(column)) : this.settings.redaction);
      }
    }
    return KEEP;
  }
}
