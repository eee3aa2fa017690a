// The mapping builder, typed row accessors and native test host of the JavaScript SDK.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  COMPUTED, Column, KEEP, Mapping, Op, Plugin, PluginError, SKIP, TableSchema, TypeClass, UNCHANGED,
  Unsupported, classOfSql,
} from '@pgmorph/plugin';
import { Row } from '../src/row.js';
import { TestHost } from '@pgmorph/plugin/testing';

const orders = () => new TableSchema('public', 'orders', [
  new Column('id', 'bigint').key(), new Column('email', 'text'), new Column('n', 'numeric(12,2)'), new Column('tags', 'text[]'),
]);

/** Exercises every accessor: doubles `n`, adds `tag_count`, skips `email = 'skip'`. */
class Everything extends Plugin {
  mapTable(table) {
    const m = Mapping.fromSchema(table).renameTable('sales', 'orders_v2');
    m.renameColumn('email', 'mail').setType('n', 'float8');
    return m.addColumn('tag_count', 'int').wantRows(['id', 'mail', 'n', 'tags']);
  }

  transformRow(table, change) {
    const row = change.row();
    const mail = row.getStr('mail');
    if (mail === 'skip') return SKIP;
    if (mail === 'boom') throw new Unsupported('no boom');
    if (mail === 'bug') return null.x;
    row.setFloat('n', row.getFloat('n') * 2);
    row.setInt('tag_count', (row.getArray('tags') ?? []).length);
    return KEEP;
  }
}

test('classifies SQL types as the wire crate', () => {
  assert.equal(classOfSql('numeric(12,2)')[0], TypeClass.NUMERIC);
  assert.equal(classOfSql('timestamp(3) with time zone')[0], TypeClass.TIMESTAMPTZ);
  assert.deepEqual(classOfSql('integer[]'), [TypeClass.ARRAY, TypeClass.INTEGER]);
  assert.equal(classOfSql('"sales"."mood"')[0], TypeClass.OTHER);
  assert.deepEqual(classOfSql('  Character   Varying(20) '), [TypeClass.TEXT, null]);
});

test('builds mappings', () => {
  const m = Mapping.fromSchema(orders()).renameTable('sales', 'orders_v2').wantRows(['email']);
  m.renameColumn('email', 'mail');
  assert.deepEqual(m.rows, ['mail']);
  assert.throws(() => m.dropColumn('id'), /key column/);
  m.dropColumn('tags').addColumn('k', 'int');
  assert.deepEqual(m.columns.map((c) => c.name), ['id', 'mail', 'n', 'k']);
  assert.equal(m.column('k').source, COMPUTED);
  assert.deepEqual(m.rows, ['mail', 'k']);
  assert.throws(() => m.setType('nope', 'int'), (e) => e instanceof Unsupported && /no column "nope"/.test(e.message));
  assert.equal(Mapping.skipTable().skip, true);
});

test('runs rows natively', () => {
  const host = new TestHost(Everything);
  const m = host.mapTable(orders());
  assert.deepEqual([m.schema, m.name], ['sales', 'orders_v2']);
  const out = host.transform(orders(), Op.INSERT, null, { id: '1', mail: 'a', n: '1.25', tags: '{x,"y z",NULL}' });
  assert.deepEqual(out, { kept: true, old: null, new: { id: '1', mail: 'a', n: '2.5', tags: '{x,"y z",NULL}', tag_count: '3' } });
  assert.deepEqual(host.transform(orders(), Op.INSERT, null, { id: '2', mail: 'skip' }), { skipped: true });
  assert.deepEqual(host.transform(orders(), Op.INSERT, null, { id: '3', mail: 'boom' }), { failed: 'unsupported: no boom' });
  const bug = host.transform(orders(), Op.INSERT, null, { id: '4', mail: 'bug' });
  assert.match(bug.failed, /^TypeError: /);
});

test('typed accessors', () => {
  const names = ['n', 'b', 'f', 'a', 'j', 't', 'u'];
  const bytes = (s) => new TextEncoder().encode(s);
  const row = new Row(null, new Map(names.map((n, i) => [n, i])),
    [bytes('9007199254740993'), bytes('\\x0aff'), null, null, bytes('{"k":[1]}'), bytes('t'), UNCHANGED]);
  assert.equal(row.getInt('n'), 9007199254740993n);
  assert.deepEqual(row.getBytes('b'), new Uint8Array([0x0a, 0xff]));
  assert.deepEqual(row.getJson('j'), { k: [1] });
  assert.equal(row.getBool('t'), true);
  assert.equal(row.isUnchanged('u'), true);
  assert.throws(() => row.getStr('u'), /unchanged TOAST/);
  assert.equal(row.modified, false);
  row.setFloat('f', Infinity);
  assert.equal(row.getStr('f'), 'Infinity');
  row.setFloat('f', 0.1);
  assert.equal(row.getFloat('f'), 0.1);
  row.setArray('a', ['x,y', null, 'q"']);
  assert.deepEqual(row.getArray('a'), ['x,y', null, 'q"']);
  row.setBytes('b', new Uint8Array([0, 16]));
  assert.equal(row.getStr('b'), '\\x0010');
  assert.equal(row.modified, true);
  assert.throws(() => row.getStr('missing'), (e) => e instanceof PluginError && /not in the row/.test(e.message));
});
