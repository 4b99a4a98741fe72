import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conn } from '../../src/workers/connection.js';
import type { ModuleRt } from '../../src/workers/loader.js';
import type { Outbox } from '../../src/workers/outbox.js';
import { jsonCodec } from '../../src/shared/wire.js';
import { defineHooks, defineModule } from '../../src/workers/define.js';
import { memberCursor, parseMemberCursor } from '../../src/shared/paging.js';

// Argument checks that run before anything is queued: no outbox or module is reached.
const conn = (): Conn => new Conn(1, 1, {} as ModuleRt, {} as Outbox, '/x', '', '127.0.0.1', {}, {});

test('close codes a client fails (1004-1006, 1015, 1016-2999, outside 1000-4999) are refused by ctx.close and by bind\'s kick code', async () => {
  for (const code of [999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 1000.5]) {
    assert.throws(() => conn().close(code), RangeError, `close(${code})`);
    await assert.rejects(conn().bind('u', { onDuplicate: 'kick', code }), RangeError, `bind code ${code}`);
  }
});

test('json codec: bytes (Uint8Array, ArrayBuffer, DataView) become their UTF-8 text; other typed arrays stay JSON values', () => {
  const hi = new TextEncoder().encode('hi');
  const data = (p: unknown): unknown => (JSON.parse(new TextDecoder().decode(jsonCodec.encode('E', 1, p))) as { data: unknown }).data;
  assert.equal(data(hi), 'hi');
  assert.equal(data(hi.slice().buffer), 'hi');
  assert.equal(data(new DataView(hi.slice().buffer)), 'hi');
  assert.deepEqual(data(new Float32Array([1.5, 2])), { 0: 1.5, 1: 2 });
  assert.deepEqual(data(new Uint16Array([1, 2])), { 0: 1, 1: 2 });
});

test('topics and room names are at most 65535 UTF-8 bytes (what a cluster carries); subscribe, publish, join, leave and room refuse longer ones with a RangeError', async () => {
  const long = 'é'.repeat(32_768); // 65,536 bytes in 32,768 UTF-16 units
  assert.throws(() => conn().subscribe(long), RangeError);
  assert.throws(() => conn().unsubscribe(long), RangeError);
  assert.throws(() => conn().publish(long, 'x'), RangeError);
  assert.throws(() => conn().leave(long), RangeError);
  await assert.rejects(conn().join(long), { name: 'RangeError', message: 'topic must be at most 65535 UTF-8 bytes' });
  await assert.rejects(conn().room('x'.repeat(65_536)), RangeError);
});

test('defineModule and defineHooks refuse a field they do not read (a misspelt hook would never run), naming the closest one', () => {
  const handler = (): void => {};
  // TypeScript lets these through: the generic parameter takes the literal's own type.
  assert.throws(() => defineModule({ path: '/x', onConect: handler, events: { A: { handler } } }),
    { name: 'TypeError', message: 'module.onConect is not a known field (did you mean module.onConnect?)' });
  assert.throws(() => defineModule({ path: '/x', events: { A: { prehandler: [handler], handler } } }),
    { name: 'TypeError', message: 'module.events.A.prehandler is not a known field (did you mean module.events.A.preHandler?)' });
  // The closest name, not the first within two edits: onConnect (two) comes before onDisconnect (one).
  assert.throws(() => defineModule({ path: '/x', onDiconnect: handler, handler }),
    { name: 'TypeError', message: 'module.onDiconnect is not a known field (did you mean module.onDisconnect?)' });
  assert.throws(() => defineModule({ path: '/x', events: { A: { rhandler: handler, handler } } }),
    { name: 'TypeError', message: 'module.events.A.rhandler is not a known field (did you mean module.events.A.handler?)' });
  assert.throws(() => defineModule({ path: '/x', handler, resume: { graceMs: 5000, maxMesages: 10 } }),
    { name: 'TypeError', message: 'module.resume.maxMesages is not a known field (did you mean module.resume.maxMessages?)' });
  assert.throws(() => defineModule({ path: '/x', handler, routes: {} }), { name: 'TypeError', message: 'module.routes is not a known field' });
  assert.throws(() => defineHooks({ onError: handler, onRecieved: handler }),
    { name: 'TypeError', message: 'hooks.onRecieved is not a known field (did you mean hooks.onReceived?)' });
  // Every documented field is still taken.
  const hooks = { onUpgrade: handler, onConnect: handler, onReceived: handler, onDisconnect: handler, onError: handler,
    onAway: handler, onResume: handler, onSubscribe: handler, onDrain: handler };
  defineHooks(hooks);
  defineModule({ path: '/x', codec: 'json', options: { idleTimeout: 60 }, resume: { graceMs: 1000 }, handler,
    events: { A: { preHandler: handler, handler } }, ...hooks });
});

test('reject() headers: a name that is not an HTTP token, or a value with CR, LF or NUL, is refused (no response splitting)', () => {
  assert.throws(() => conn().reject(403, 'no', { 'x-why': 'a\r\nSet-Cookie: evil=1' }), TypeError);
  assert.throws(() => conn().reject(403, 'no', { 'x-why': 'a\nb' }), TypeError);
  assert.throws(() => conn().reject(403, 'no', { 'x-why': 'a\0b' }), TypeError);
  assert.throws(() => conn().reject(403, 'no', { 'bad name': 'v' }), TypeError);
  assert.throws(() => conn().reject(403, 'no', { 'x-n': 5 as unknown as string }), TypeError);
  const c = conn();
  c.reject(403, 'no', { 'x-why': 'plain value; with: punctuation' });
  assert.equal(c.rejected, true);
});

test('reject() headers: what goes out is what was checked, whatever the caller does to its object afterwards', () => {
  // An async upgrade hook may go on after reject() (the record is written once it settles): a CR/LF
  // put into the object then, or a getter answering differently the second time, must not reach uWS.
  const c = conn();
  const headers: Record<string, string> = { 'x-why': 'checked' };
  c.reject(403, 'no', headers);
  headers['x-why'] = 'a\r\nSet-Cookie: evil=1';
  headers['x-more'] = 'b\r\nX: y';
  let reads = 0;
  const g = conn();
  g.reject(403, 'no', { get 'x-g'() { return ++reads === 1 ? 'fine' : 'a\r\nSet-Cookie: evil=1'; } });
  assert.deepEqual({ ...c.rejectHeaders }, { 'x-why': 'checked' });
  assert.deepEqual(Object.values(g.rejectHeaders!), ['fine']);
});

test('paging options are checked before anything is queued; a member cursor is "handle" or "node:handle" (a node id may hold ":")', async () => {
  await assert.rejects(conn().listRooms({ limt: 5 } as never), { name: 'TypeError', message: 'listRooms() options.limt is not an option (did you mean limit?)' });
  await assert.rejects(conn().room('r', { limit: 0 }), { name: 'RangeError', message: 'room() options.limit must be an integer between 1 and 10000, got 0' });
  await assert.rejects(conn().room('r', { after: '12a' }), RangeError);
  await assert.rejects(conn().listRooms({ after: 'x'.repeat(65_536) }), RangeError);
  assert.deepEqual(parseMemberCursor('16777217'), { node: '', handle: 16777217 });
  assert.deepEqual(parseMemberCursor('eu:west-1:42'), { node: 'eu:west-1', handle: 42 });
  assert.equal(parseMemberCursor('node:'), null);
  assert.equal(parseMemberCursor('99999999999999999'), null);
  assert.equal(memberCursor({ handle: 42, uid: null, meta: null, node: 'eu:west-1' }), 'eu:west-1:42');
});
