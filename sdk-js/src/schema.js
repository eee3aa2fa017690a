// Table schemas a plugin receives and the mappings it returns (the mapping builder).

import { Unsupported } from './errors.js';

/** How a column's values are shaped: the WIT `type-class` enum's names. */
export const TypeClass = Object.freeze({
  BOOLEAN: 'boolean', INTEGER: 'integer', FLOAT: 'float', NUMERIC: 'numeric', TEXT: 'text',
  BYTES: 'bytes', DATE: 'date', TIME: 'time', TIMESTAMP: 'timestamp', TIMESTAMPTZ: 'timestamptz',
  INTERVAL: 'interval', UUID: 'uuid', JSON: 'json', ARRAY: 'array', OTHER: 'other',
});

const CLASSES = new Map();
for (const [cls, names] of [
  [TypeClass.BOOLEAN, ['boolean', 'bool']],
  [TypeClass.INTEGER, ['smallint', 'integer', 'int', 'bigint', 'int2', 'int4', 'int8', 'oid', 'smallserial', 'serial', 'bigserial']],
  [TypeClass.FLOAT, ['real', 'double precision', 'float4', 'float8', 'float']],
  [TypeClass.NUMERIC, ['numeric', 'decimal', 'money']],
  [TypeClass.TEXT, ['text', 'varchar', 'character varying', 'character', 'char', 'bpchar', 'name', 'citext']],
  [TypeClass.BYTES, ['bytea']],
  [TypeClass.DATE, ['date']],
  [TypeClass.TIME, ['time', 'time without time zone', 'time with time zone', 'timetz']],
  [TypeClass.TIMESTAMP, ['timestamp', 'timestamp without time zone']],
  [TypeClass.TIMESTAMPTZ, ['timestamptz', 'timestamp with time zone']],
  [TypeClass.INTERVAL, ['interval']],
  [TypeClass.UUID, ['uuid']],
  [TypeClass.JSON, ['json', 'jsonb']],
]) {
  for (const n of names) CLASSES.set(n, cls);
}

/** The class of an SQL type name, with the element class for arrays (as `pgmorph-wire`). */
export function classOfSql(typeSql) {
  const t = typeSql.trim();
  if (t.endsWith('[]')) return [TypeClass.ARRAY, classOfSql(t.slice(0, -2))[0]];
  let base = '';
  let depth = 0;
  for (const ch of t) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch !== '"' && depth === 0) base += ch < '\x80' ? ch.toLowerCase() : ch;
  }
  base = base.split(/[ \t\n\r\f\v]+/).filter(Boolean).join(' ');
  if (base.startsWith('pg_catalog.')) base = base.slice('pg_catalog.'.length);
  return [CLASSES.get(base) ?? TypeClass.OTHER, null];
}

/** One column of a table as a plugin receives it. */
export class Column {
  constructor(name, typeSql, { notNull = false, isKey = false, typeClass, elementClass } = {}) {
    this.name = name;
    this.typeSql = typeSql;
    if (typeClass === undefined) [typeClass, elementClass] = classOfSql(typeSql);
    this.typeClass = typeClass;
    this.elementClass = elementClass ?? null;
    this.notNull = notNull;
    this.isKey = isKey;
  }

  /** Marks the column as a NOT NULL key column. */
  key() {
    this.isKey = this.notNull = true;
    return this;
  }
}

/** A table as a plugin receives it: the source table after the earlier plugins. */
export class TableSchema {
  constructor(schema, name, columns) {
    this.schema = schema;
    this.name = name;
    this.columns = columns;
  }

  /** The column with this name, or undefined. */
  column(name) {
    return this.columns.find((c) => c.name === name);
  }

  qualifiedName() {
    return `${this.schema}.${this.name}`;
  }
}

/** `MappedColumn.source` of a column the row hook fills; otherwise the source is an input index. */
export const COMPUTED = 'computed';

/**
 * Where a table lands: built from the input schema, then reshaped with the builder methods
 * (each returns the mapping, so calls chain). Columns are `{ name, typeSql, source, notNull,
 * isKey }`, `source` the input column's index or `COMPUTED`.
 */
export class Mapping {
  constructor(schema, name, columns, { rows = null, skip = false } = {}) {
    this.skip = skip;
    this.schema = schema;
    this.name = name;
    this.columns = columns;
    this.rows = rows;
  }

  /** The pass-through mapping: same names, same columns, no rows. */
  static fromSchema(table) {
    return new Mapping(table.schema, table.name, table.columns.map((c, i) => ({
      name: c.name, typeSql: c.typeSql, source: i, notNull: c.notNull, isKey: c.isKey,
    })));
  }

  /** A mapping that drops the whole table. */
  static skipTable() {
    return new Mapping('', '', [], { skip: true });
  }

  #index(column) {
    const i = this.columns.findIndex((c) => c.name === column);
    if (i < 0) throw new Unsupported(`table ${this.schema}.${this.name} has no column ${JSON.stringify(column)}`);
    return i;
  }

  /** The output column with this name. */
  column(name) {
    return this.columns[this.#index(name)];
  }

  renameTable(schema, name) {
    this.schema = schema;
    this.name = name;
    return this;
  }

  renameColumn(from, to) {
    this.column(from).name = to;
    if (this.rows) this.rows = this.rows.map((r) => (r === from ? to : r));
    return this;
  }

  /** Changes a column's SQL type (the destination casts the text unless the row hook converts it). */
  setType(column, typeSql) {
    this.column(column).typeSql = typeSql;
    return this;
  }

  /** Drops a column. Key columns cannot be dropped (updates and deletes need them). */
  dropColumn(column) {
    const i = this.#index(column);
    if (this.columns[i].isKey) {
      throw new Unsupported(`column ${JSON.stringify(column)} of ${this.schema}.${this.name} is a key column and cannot be dropped`);
    }
    this.columns.splice(i, 1);
    if (this.rows) this.rows = this.rows.filter((r) => r !== column);
    return this;
  }

  /** Adds a computed column, filled by the row hook (also added to the row columns). */
  addColumn(column, typeSql) {
    if (this.columns.some((c) => c.name === column)) {
      throw new Unsupported(`table ${this.schema}.${this.name} already has a column ${JSON.stringify(column)}`);
    }
    this.columns.push({ name: column, typeSql, source: COMPUTED, notNull: false, isKey: false });
    return this.wantRows([column]);
  }

  /** Asks for the row hook with these output columns (added to any asked for before). */
  wantRows(columns) {
    const wanted = [...(this.rows ?? [])];
    for (const c of columns) {
      this.#index(c);
      if (!wanted.includes(c)) wanted.push(c);
    }
    this.rows = wanted;
    return this;
  }

  wantAllRows() {
    this.rows = this.columns.map((c) => c.name);
    return this;
  }
}

/** A mapped table, as the row hook sees it. */
export class Table {
  constructor(input, output) {
    this.input = input;
    this.output = output;
    this.rowColumns = (output.rows ?? [])
      .map((n) => output.columns.find((c) => c.name === n))
      .filter(Boolean)
      .map((c) => new Column(c.name, c.typeSql, { notNull: c.notNull, isKey: c.isKey }));
    this.qualified = input.qualifiedName();
  }

  qualifiedName() {
    return this.qualified;
  }
}
