import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SendStatus,
  type AddClientResult,
  type ClientManager,
  type ClientRequest,
  type ConnectorClient,
  type RouteTable,
} from '../../src/core/connector.js';
import { MemoryConnectError, MemoryConnector } from '../../src/core/connectors/memory.js';

/** Records every call; `/chat/*` is accepted, anything else refused with 404. */
class FakeManager implements ClientManager {
  readonly added: { client: ConnectorClient; req: ClientRequest }[] = [];
  readonly msgs: { client: ConnectorClient; data: Uint8Array; binary: boolean }[] = [];
  readonly removed: { client: ConnectorClient; code: number; reason: string }[] = [];
  readonly drains: ConnectorClient[] = [];
  #fd = 0;

  async addClient(client: ConnectorClient, req: ClientRequest): Promise<AddClientResult> {
    this.added.push({ client, req });
    if (!req.path.startsWith('/chat/')) return { ok: false, status: 404, code: 'RW_ERR_NO_MODULE', message: 'no module' };
    const fd = ++this.#fd;
    const session = { fd, handle: fd + 0x1000000, path: req.path };
    client.session = session;
    // An open hook may send before addClient resolves.
    client.send(Uint8Array.of(0xaa), true);
    return { ok: true, session };
  }

  handleMsg(client: ConnectorClient, data: Uint8Array, binary: boolean): void {
    this.msgs.push({ client, data: Uint8Array.from(data), binary });
  }

  removeClient(client: ConnectorClient, code: number, reason: string): void {
    this.removed.push({ client, code, reason });
  }

  drain(client: ConnectorClient): void {
    this.drains.push(client);
  }

  routes(): RouteTable | null {
    return null;
  }

  reportError(): void {}
}

async function started(): Promise<{ manager: FakeManager; connector: MemoryConnector }> {
  const manager = new FakeManager();
  const connector = new MemoryConnector();
  await connector.start(manager);
  return { manager, connector };
}

test('accept: the request reaches addClient and the session comes back', async () => {
  const { manager, connector } = await started();
  assert.equal(connector.name, 'memory');
  const c = await connector.connect('/chat/lobby', 'a=1', { 'x-id': '7' });
  assert.deepEqual(manager.added.map((a) => a.req), [{ path: '/chat/lobby', query: 'a=1', headers: { 'x-id': '7' } }]);
  assert.deepEqual(c.session, { fd: 1, handle: 1 + 0x1000000, path: '/chat/lobby' });
  assert.equal(manager.added[0]!.client.remoteAddress, 'memory');
  assert.deepEqual(await c.next(), { data: Uint8Array.of(0xaa), binary: true }, 'sent during addClient, still delivered');
});

test('refusal rejects with code and status; the client gets its one removeClient', async () => {
  const { manager, connector } = await started();
  await assert.rejects(connector.connect('/nowhere'), (err: unknown) => {
    assert.ok(err instanceof MemoryConnectError);
    assert.deepEqual([err.status, err.code, err.message], [404, 'RW_ERR_NO_MODULE', 'no module']);
    return true;
  });
  assert.equal(manager.removed.length, 1);
  assert.equal(manager.removed[0]!.client, manager.added[0]!.client);
});

test('send → handleMsg; server send → next(), copied; bufferedAmount counts what next() has not taken', async () => {
  const { manager, connector } = await started();
  const c = await connector.connect('/chat/a');
  await c.next();
  const server = manager.added[0]!.client;
  assert.equal(c.send(Uint8Array.of(1, 2)), true);
  c.send(new TextEncoder().encode('hi'), false);
  assert.deepEqual(manager.msgs.map((m) => [m.client === server, [...m.data], m.binary]), [
    [true, [1, 2], true],
    [true, [104, 105], false],
  ]);

  const bytes = Uint8Array.of(5, 6, 7);
  const waiting = c.next(); // a waiter before the message
  assert.equal(server.send(bytes, true), SendStatus.SUCCESS);
  bytes.fill(0); // the core's bytes are only valid during send()
  assert.deepEqual(await waiting, { data: Uint8Array.of(5, 6, 7), binary: true });

  const buf = Buffer.from('queued');
  server.send(buf, false);
  buf.fill(0); // Buffer#slice would have kept a view: the copy must be real
  assert.equal(server.bufferedAmount(), 6);
  const m = await c.next();
  assert.equal(Buffer.from(m.data).toString(), 'queued');
  assert.equal(m.binary, false);
  assert.equal(server.bufferedAmount(), 0);
});

test('server-side close: closed resolves, queued messages drain, then next() rejects; removeClient once, after the call', async () => {
  const { manager, connector } = await started();
  const c = await connector.connect('/chat/a');
  const server = manager.added[0]!.client;
  server.close(4001, 'kicked');
  assert.equal(manager.removed.length, 0, 'not re-entrant: removeClient comes after close() returns');
  server.close(4002, 'again');
  assert.deepEqual(await c.closed, { code: 4001, reason: 'kicked' });
  await Promise.resolve();
  assert.deepEqual(manager.removed.map((r) => [r.client === server, r.code, r.reason]), [[true, 4001, 'kicked']]);
  assert.deepEqual(await c.next(), { data: Uint8Array.of(0xaa), binary: true });
  await assert.rejects(c.next(), { name: 'ClientClosedError', code: 'RW_ERR_CLIENT_CLOSED', closeCode: 4001, reason: 'kicked', message: /closed/ });
  assert.equal(server.send(Uint8Array.of(1), true), SendStatus.DROPPED);
  assert.equal(c.send(Uint8Array.of(1)), false);
  assert.equal(manager.msgs.length, 0);
  c.close();
  assert.equal(manager.removed.length, 1);
});

test('client-side close: removeClient once with its code; a pending next() rejects', async () => {
  const { manager, connector } = await started();
  const c = await connector.connect('/chat/a');
  await c.next();
  const pending = c.next();
  c.close(1000, 'bye');
  c.close(4000, 'twice');
  manager.added[0]!.client.close(1001, 'server too');
  await assert.rejects(pending, { code: 'RW_ERR_CLIENT_CLOSED', closeCode: 1000, reason: 'bye', message: /closed/ });
  assert.deepEqual(await c.closed, { code: 1000, reason: 'bye' });
  await Promise.resolve();
  assert.deepEqual(manager.removed.map((r) => [r.code, r.reason]), [[1000, 'bye']]);
});

test('send(): SUCCESS to a waiting next(), BACKPRESSURE when queued, DROPPED past maxQueuedBytes; drain once next() empties the queue', async () => {
  const manager = new FakeManager();
  const connector = new MemoryConnector({ maxQueuedBytes: 10 });
  await connector.start(manager);
  const c = await connector.connect('/chat/a');
  const server = manager.added[0]!.client;
  assert.deepEqual(await c.next(), { data: Uint8Array.of(0xaa), binary: true }); // queued during addClient
  assert.deepEqual(manager.drains, [server], 'that queue drained');
  const waiting = c.next();
  assert.equal(server.send(Uint8Array.of(1), true), SendStatus.SUCCESS);
  await waiting;
  const six = new Uint8Array(6);
  assert.equal(server.send(six, true), SendStatus.BACKPRESSURE); // 6 queued
  assert.equal(server.send(six, true), SendStatus.BACKPRESSURE); // 12: over the bound from now on
  assert.equal(server.send(six, true), SendStatus.DROPPED);
  assert.equal(server.send(Uint8Array.of(1), true), SendStatus.DROPPED);
  assert.equal(c.queuedBytes, 12);
  await c.next();
  assert.equal(manager.drains.length, 1, 'no drain while messages are still queued');
  assert.equal(server.send(six, true), SendStatus.BACKPRESSURE); // 12 again
  await c.next();
  await c.next();
  assert.equal(c.queuedBytes, 0);
  assert.deepEqual(manager.drains, [server, server]);
});

test('MemoryConnector options are validated', () => {
  assert.throws(() => new MemoryConnector({ maxQueuedBytes: -1 }), /maxQueuedBytes/);
  assert.throws(() => new MemoryConnector({ maxQueuedBytes: 1.5 }), /maxQueuedBytes/);
  // A misspelt option (plain JS, or config typed loosely) is an error, not the default silently kept.
  assert.throws(() => new MemoryConnector({ maxQueuedByte: 10 } as never), { name: 'TypeError', message: 'options.maxQueuedByte is not an option (did you mean maxQueuedBytes?)' });
  assert.doesNotThrow(() => new MemoryConnector());
});

test('connect before start or after stop is refused with 503', async () => {
  const idle = new MemoryConnector();
  await assert.rejects(idle.connect('/chat/a'), { code: 'RW_ERR_SERVER_STATE', status: 503 });
  const { connector } = await started();
  await connector.stop();
  await assert.rejects(connector.connect('/chat/a'), { code: 'RW_ERR_SERVER_STATE', status: 503 });
});
