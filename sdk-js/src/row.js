// Rows and changes as the row hook sees them: cells addressed by column name, read and written
// through typed accessors over PostgreSQL's text form.

import { PluginError, Unsupported } from './errors.js';
import { UNCHANGED } from './wire.js';

/** What happened to a row (values are the wire codes). */
export const Op = Object.freeze({ SNAPSHOT: 0, INSERT: 1, UPDATE: 2, DELETE: 3 });

/** Keep the change (with any values the hook set). */
export const KEEP = 'keep';
/** Filter the change out. */
export const SKIP = 'skip';

const strict = new TextDecoder('utf-8', { fatal: true });
const q = (s) => JSON.stringify(s);

/**
 * One row: a cell per column the mapping asked for. Cells are null (NULL), `UNCHANGED`, a
 * `Uint8Array` view of the batch (as decoded) or a string (once set).
 */
export class Row {
  constructor(columns, index, cells) {
    this.columns = columns;
    this.index = index;
    this.cells = cells;
    this.modified = false;
  }

  #at(name) {
    const i = this.index.get(name);
    if (i === undefined) throw new PluginError(`column ${q(name)} is not in the row (ask for it in Mapping.wantRows)`);
    return i;
  }

  isNull(name) {
    return this.cells[this.#at(name)] === null;
  }

  /** Whether the column holds an unchanged TOAST value the source did not send. */
  isUnchanged(name) {
    return this.cells[this.#at(name)] === UNCHANGED;
  }

  getStr(name) {
    const cell = this.cells[this.#at(name)];
    if (cell === null || typeof cell === 'string') return cell;
    if (cell === UNCHANGED) throw new PluginError(`column ${q(name)} is an unchanged TOAST value the source did not send`);
    try {
      return strict.decode(cell);
    } catch {
      throw new PluginError(`column ${q(name)} is not UTF-8`);
    }
  }

  /** An integer column as a BigInt (64-bit values do not fit a Number). */
  getInt(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    if (!/^\s*[+-]?\d+\s*$/.test(s)) throw new PluginError(`column ${q(name)}: ${q(s)} is not an integer`);
    return BigInt(s.trim());
  }

  getFloat(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    const t = s.trim();
    if (t === 'NaN') return NaN;
    const v = Number(t);
    if (t === '' || Number.isNaN(v)) throw new PluginError(`column ${q(name)}: ${q(s)} is not a number`);
    return v;
  }

  getBool(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    if (s === 't' || s === 'true') return true;
    if (s === 'f' || s === 'false') return false;
    throw new PluginError(`column ${q(name)}: ${q(s)} is not a boolean`);
  }

  /** A `bytea` value (hex output form) as a Uint8Array. */
  getBytes(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    if (!s.startsWith('\\x') || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s.slice(2))) {
      throw new PluginError(`column ${q(name)} is not hex bytea`);
    }
    const out = new Uint8Array((s.length - 2) / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 + 2 * i, 2), 16);
    return out;
  }

  getJson(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    try {
      return JSON.parse(s);
    } catch (e) {
      throw new PluginError(`column ${q(name)} is not JSON: ${e.message}`);
    }
  }

  /** A one-dimensional array literal as an array of string or null elements. */
  getArray(name) {
    const s = this.getStr(name);
    if (s === null) return null;
    const elements = parseArray(s);
    if (elements === null) throw new Unsupported(`column ${q(name)}: ${q(s)} is not a one-dimensional array literal`);
    return elements;
  }

  setStr(name, value) {
    this.cells[this.#at(name)] = String(value);
    this.modified = true;
  }

  setNull(name) {
    this.cells[this.#at(name)] = null;
    this.modified = true;
  }

  setInt(name, value) {
    this.setStr(name, BigInt(value).toString());
  }

  setFloat(name, value) {
    let text;
    if (Number.isNaN(value)) text = 'NaN';
    else if (value === Infinity) text = 'Infinity';
    else if (value === -Infinity) text = '-Infinity';
    else text = String(value);
    this.setStr(name, text);
  }

  setBool(name, value) {
    this.setStr(name, value ? 't' : 'f');
  }

  setBytes(name, value) {
    let hex = '\\x';
    for (const b of value) hex += b.toString(16).padStart(2, '0');
    this.setStr(name, hex);
  }

  setJson(name, value) {
    this.setStr(name, JSON.stringify(value));
  }

  setArray(name, elements) {
    const parts = elements.map((e) => (e === null || e === undefined
      ? 'NULL'
      : `"${String(e).replace(/[\\"]/g, (c) => `\\${c}`)}"`));
    this.setStr(name, `{${parts.join(',')}}`);
  }
}

/** One change: its operation and the old and new rows that are present. */
export class Change {
  constructor(op, old, neu) {
    this.op = op;
    this.old = old;
    this.new = neu;
  }

  /** The new row, or the old one for deletes. */
  row() {
    return this.new ?? this.old;
  }

  /** The rows present (old first), e.g. to mask both sides of an update. */
  rows() {
    return [this.old, this.new].filter((r) => r !== null);
  }
}

/** The elements of a one-dimensional array literal, or null if it is not one. */
export function parseArray(text) {
  const t = text.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) return null;
  const inner = t.slice(1, -1);
  const out = [];
  if (inner === '') return out;
  let i = 0;
  for (;;) {
    if (inner[i] === '"') {
      i++;
      let e = '';
      for (;;) {
        if (i >= inner.length) return null;
        const ch = inner[i];
        if (ch === '\\') {
          if (i + 1 >= inner.length) return null;
          e += inner[i + 1];
          i += 2;
        } else if (ch === '"') {
          i++;
          break;
        } else {
          e += ch;
          i++;
        }
      }
      out.push(e);
    } else {
      const start = i;
      while (i < inner.length && inner[i] !== ',') {
        if (inner[i] === '{' || inner[i] === '"') return null;
        i++;
      }
      const e = inner.slice(start, i);
      out.push(e === 'NULL' ? null : e);
    }
    if (i >= inner.length) return out;
    if (inner[i] !== ',') return null;
    i++;
  }
}
