// Native tests of `{{name}}`: `./test.sh` (node --test with the SDK linked in node_modules).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Column, Op, TableSchema } from '@pgmorph/plugin';
import { TestHost } from '@pgmorph/plugin/testing';

import {{type_name}} from './plugin.js';

const users = () => new TableSchema('public', 'users', [new Column('id', 'int').key(), new Column('name', 'text')]);

test('upper-cases the configured columns', () => {
  const host = new TestHost({{type_name}}, { columns: ['name'] });
  const out = host.transform(users(), Op.INSERT, null, { id: '1', name: 'ada' });
  assert.deepEqual(out, { kept: true, old: null, new: { id: '1', name: 'ADA' } });
});

test('asks for no rows without columns', () => {
  assert.equal(new TestHost({{type_name}}).mapTable(users()).rows, null);
});
