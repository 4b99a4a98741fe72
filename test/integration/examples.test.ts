import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/core/server.js';
import { Client, example } from '../helpers.js';

test('examples/echo: the binary codec echo module answers with the same payload and ref', async () => {
  const server = createServer({ modules: [example('echo/echo.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/echo`);
    const f = await c.call('ECHO', 'ping', 42);
    assert.deepEqual({ event: f.event, ref: f.ref, text: f.text }, { event: 'ECHO', ref: 42, text: 'ping' });
    await c.close();
  } finally {
    await server.close();
  }
});

test('examples/chat: join, say and leave reach the room members only', async () => {
  const server = createServer({ modules: [example('chat/chat.module')], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = (room: string, name: string): string => `ws://127.0.0.1:${port}/chat/${room}?name=${name}`;
    const alice = await Client.open(url('lobby', 'alice'));
    assert.deepEqual(await alice.nextJson(), { cmd: 'JOIN', data: { name: 'alice' }, ref: 0 });
    const bob = await Client.open(url('lobby', 'bob'));
    assert.deepEqual(await alice.nextJson(), { cmd: 'JOIN', data: { name: 'bob' }, ref: 0 });
    assert.deepEqual(await bob.nextJson(), { cmd: 'JOIN', data: { name: 'bob' }, ref: 0 });
    const other = await Client.open(url('other', 'carol'));
    await other.nextJson(); // her own join
    bob.ws.send(JSON.stringify({ cmd: 'SAY', data: 'hi all' }));
    const said = { cmd: 'SAY', data: { from: 'bob', text: 'hi all' }, ref: 0 };
    assert.deepEqual(await alice.nextJson(), said);
    assert.deepEqual(await bob.nextJson(), said);
    bob.ws.send(JSON.stringify({ cmd: 'SAY', data: '', ref: 3 }));
    assert.deepEqual(await bob.nextJson(), { cmd: 'SAY', data: { error: 'SAY data must be a string of 1-1000 characters' }, ref: 3 });
    await bob.close();
    assert.deepEqual(await alice.nextJson(), { cmd: 'LEAVE', data: { name: 'bob' }, ref: 0 });
    // carol (another room) heard nothing after her own join
    other.ws.send(JSON.stringify({ cmd: 'WHO', ref: 9 }));
    const who = await other.nextJson();
    assert.equal(who.cmd, 'WHO');
    assert.deepEqual({ ...(who.data as object), handle: 0 }, { room: 'other', name: 'carol', handle: 0 });
    await Promise.all([alice.close(), other.close()]);
  } finally {
    await server.close();
  }
});

test('examples/chat: a bad name is refused at upgrade with 400', async () => {
  const server = createServer({ modules: [example('chat/chat.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/chat/lobby?name=no%20spaces`), { statusCode: 400 });
  } finally {
    await server.close();
  }
});

test('npm start entry (examples/chat/main) serves and stops on SIGTERM', async () => {
  const main = fileURLToPath(new URL('../../examples/chat/main.js', import.meta.url));
  const child = spawn(process.execPath, [main], { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const it = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = String((await it.next()).value);
  const m = /listening on 127\.0\.0\.1:(\d+)/.exec(first);
  assert.ok(m, first);
  const c = await Client.open(`ws://127.0.0.1:${m[1]}/echo`);
  assert.equal((await c.call('ECHO', 'up')).text, 'up');
  child.kill('SIGTERM');
  assert.equal((await c.closed).code, 1001);
  assert.equal(await exited, 0);
});
