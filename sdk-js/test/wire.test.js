// The JavaScript codec against bytes written by the Rust codec (`wire/fixtures/`, checked by
// `wire/tests/sdk_fixtures.rs`): it decodes them to what `cases.json` says, encodes that back
// to the same bytes, and rejects malformed input with the Rust decoder's exact message.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import * as wire from '@pgmorph/plugin/wire';

const fixtures = new URL('../../wire/fixtures/', import.meta.url);
const read = (name) => new Uint8Array(readFileSync(new URL(name, fixtures)));
const cases = JSON.parse(readFileSync(new URL('cases.json', fixtures), 'utf-8'));

const cellToJson = (c) => (c === null ? null : c === wire.UNCHANGED ? { unchanged: true } : wire.cellText(c));
const cellFromJson = (c) => (c !== null && typeof c === 'object' ? wire.UNCHANGED : c);
const rowToJson = (r) => (r === null ? null : r.map(cellToJson));
const rowFromJson = (r) => (r === null ? null : r.map(cellFromJson));

test('decodes the Rust batch', () => {
  const { width, changes } = cases.batch;
  const got = wire.decodeBatch(read('batch.bin'), width)
    .map((c) => ({ op: c.op, old: rowToJson(c.old), new: rowToJson(c.new) }));
  assert.deepEqual(got, changes);
});

test('encodes the Rust batch', () => {
  const changes = cases.batch.changes.map((c) => ({ op: c.op, old: rowFromJson(c.old), new: rowFromJson(c.new) }));
  assert.deepEqual(wire.encodeBatch(changes), read('batch.bin'));
});

test('verdicts round-trip the Rust bytes', () => {
  const { count, width, verdicts } = cases.verdicts;
  const w = new wire.Writer(4);
  for (const v of verdicts) {
    if (v.keep) wire.writeKeep(w);
    else if (v.skip) wire.writeSkip(w);
    else if (v.error !== undefined) wire.writeError(w, v.error);
    else if (v.route !== undefined) wire.writeRoute(w, v.route);
    else wire.writeModified(w, rowFromJson(v.modified.old), rowFromJson(v.modified.new));
  }
  const data = read('verdicts.bin');
  assert.deepEqual(w.finish(), data);
  const decoded = wire.decodeVerdicts(data, count, width);
  assert.deepEqual(decoded.map((v) => v.code), [0, 1, 1, 2, 3, 4]);
  assert.deepEqual(rowToJson(decoded[2].old), ['a', { unchanged: true }]);
  assert.equal(decoded[4].text, verdicts[4].error);
});

test('rejects malformed input as Rust does', () => {
  for (const c of cases.errors) {
    const bytes = new Uint8Array(c.bytes);
    const run = () => (c.decode === 'batch' ? wire.decodeBatch(bytes, c.width) : wire.decodeVerdicts(bytes, c.count, c.width));
    assert.throws(run, (e) => e instanceof wire.WireError && e.message === c.error, JSON.stringify(c));
  }
});
