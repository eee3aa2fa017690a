// Native tests of the JavaScript `mask` example: `node --test` in sdk-js.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { Column, InvalidConfig, Op, TableSchema } from '@pgmorph/plugin';
import { TestHost } from '@pgmorph/plugin/testing';

import Mask from './plugin.js';
import { sha256Hex } from './sha256.js';

const users = () => new TableSchema('public', 'u', [
  new Column('email', 'text').key(), new Column('ssn', 'text'), new Column('n', 'int'), new Column('age', 'int'),
]);
const config = { salt: 's', hash: ['*.email'], redact: ['public.u.ssn', '*.age'] };

test('maps masked columns only', () => {
  const m = new TestHost(Mask, config).mapTable(users());
  assert.deepEqual(m.rows, ['email', 'ssn', 'age']);
  assert.equal(m.column('age').typeSql, 'text');
  assert.equal(m.column('n').typeSql, 'int');
});

test('hashes keys stably and redacts', () => {
  const host = new TestHost(Mask, config);
  const ins = host.transform(users(), Op.INSERT, null, { email: 'a@b', ssn: '1', age: null });
  const del = host.transform(users(), Op.DELETE, { email: 'a@b' }, null);
  const want = createHash('sha256').update('s\0a@b').digest('hex');
  assert.deepEqual(ins, { kept: true, old: null, new: { email: want, ssn: 'REDACTED', age: null } });
  assert.equal(del.old.email, want);
});

test('sha256 matches node:crypto across block boundaries', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 100003]) {
    const data = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 255);
    assert.equal(sha256Hex(data), createHash('sha256').update(data).digest('hex'), `length ${n}`);
  }
});

test('refuses a redacted key and unknown keys', () => {
  assert.throws(() => new TestHost(Mask, { redact: ['*.email'] }).mapTable(users()), /cannot be redacted/);
  assert.throws(() => new TestHost(Mask, { hsah: [] }), (e) => e instanceof InvalidConfig && /unknown field `hsah`/.test(e.message));
  assert.throws(() => new TestHost(Mask, null), /needs a config/);
});
