/**
 * ClientSock: sends made before the connector has answered its client are held, then handed
 * to the connector in order, on the next turn or when the core closes the client first; each
 * one the connector refuses (DROPPED) is counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientSock, TopicRegistry, type ClientSockHost } from '../../src/core/client-sock.js';
import { SendStatus, type ClientSession, type ConnectorClient } from '../../src/core/connector.js';
import type { SocketData } from '../../src/core/commands.js';

/** Records sends and closes in one log; refuses sends beyond `room`. */
class LogClient implements ConnectorClient {
  readonly transport = 'log';
  readonly remoteAddress = 'log';
  session: ClientSession | null = null;
  readonly log: string[] = [];
  room: number;
  constructor(room: number) {
    this.room = room;
  }
  send(data: Uint8Array): number {
    if (this.room === 0) {
      this.log.push(`dropped ${Buffer.from(data).toString()}`);
      return SendStatus.DROPPED;
    }
    this.room--;
    this.log.push(`send ${Buffer.from(data).toString()}`);
    return SendStatus.SUCCESS;
  }
  close(code: number, reason: string): void {
    this.log.push(`close ${code} ${reason}`);
  }
  bufferedAmount(): number {
    return 0;
  }
}

function host(log: string[]): ClientSockHost & { drops: [string, number][] } {
  const drops: [string, number][] = [];
  return {
    registry: new TopicRegistry(),
    drops,
    publishFrom() {},
    closed(s, code) {
      s.ud.closed = true;
      log.push(`core closed ${code}`);
    },
    closeFailed(_s, err) {
      log.push(`close failed ${(err as Error).message}`);
    },
    counters: { messagesOut: 0, drop(reason: string, handle = 0) { drops.push([reason, handle]); } } as ClientSockHost['counters'],
  };
}

const ud = (): SocketData => ({ handle: 77, closed: false } as SocketData);
const bytes = (s: string): Uint8Array => Buffer.from(s);
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('end() before the next turn: the held sends reach the connector first, then the core close, then close(); refused ones counted', async () => {
  const client = new LogClient(1);
  const h = host(client.log);
  const s = new ClientSock(client, ud(), h);
  assert.equal(s.send(bytes('welcome')), SendStatus.SUCCESS); // held
  s.send(bytes('again'));
  assert.deepEqual(client.log, [], 'held until the connector has answered');
  s.end(4000, 'bye');
  assert.deepEqual(client.log, ['send welcome', 'dropped again', 'core closed 4000', 'close 4000 bye']);
  assert.deepEqual(h.drops, [['backpressure', 77]]);
  await nextTurn(); // the held queue is not replayed
  assert.equal(client.log.length, 4);
});

test('held sends flushed on the next turn: a refused one is counted', async () => {
  const client = new LogClient(1);
  const h = host(client.log);
  const s = new ClientSock(client, ud(), h);
  s.send(bytes('a'));
  s.send(bytes('b'));
  await nextTurn();
  assert.deepEqual(client.log, ['send a', 'dropped b']);
  assert.deepEqual(h.drops, [['backpressure', 77]]);
  // Live from now on: the status goes straight back to the core (which counts it there).
  assert.equal(s.send(bytes('c')), SendStatus.DROPPED);
  assert.equal(h.drops.length, 1);
});

test('a client the core already closed (the peer went away) gets none of the held sends', async () => {
  const client = new LogClient(5);
  const h = host(client.log);
  const d = ud();
  const s = new ClientSock(client, d, h);
  s.send(bytes('a'));
  d.closed = true; // removeClient ran the core's close
  s.end(1006, '');
  await nextTurn();
  assert.deepEqual(client.log, ['close 1006 ']);
  assert.deepEqual(h.drops, []);
});

test('held sends of a client removed before the next turn (the peer went away) are not handed over nor counted as drops', async () => {
  const client = new LogClient(0); // a gone client refuses every send
  const h = host(client.log);
  const d = ud();
  const s = new ClientSock(client, d, h);
  s.send(bytes('welcome'));
  d.closed = true; // removeClient ran the core's close; the core does not end() the ClientSock then
  await nextTurn();
  assert.deepEqual(client.log, []);
  assert.deepEqual(h.drops, []);
});

test('a held send its connector refuses is counted once: as a drop, taken back from messagesOut; a held publish is only a drop', async () => {
  const client = new LogClient(1);
  const h = host(client.log);
  const s = new ClientSock(client, ud(), h);
  // As the command executor counts a send: messagesOut unless DROPPED.
  const send = (text: string): void => {
    if (s.send(bytes(text)) !== SendStatus.DROPPED) h.counters.messagesOut++;
  };
  send('a');
  send('b');
  h.registry.subscribe('news', s);
  // A publish (TopicRegistry) is not counted in messagesOut; a refused one is a drop of that client.
  assert.equal(h.registry.publish('news', bytes('p'), false, null, (handle) => h.counters.drop('backpressure', handle)), 1);
  assert.equal(h.counters.messagesOut, 2);
  await nextTurn();
  assert.deepEqual(client.log, ['send a', 'dropped b', 'dropped p']);
  assert.deepEqual(h.drops, [['backpressure', 77], ['backpressure', 77]]);
  assert.equal(h.counters.messagesOut, 1, 'only the delivered send counts as sent');
});

/** A client with `buffered` bytes queued that accepts every send. */
class BufferedClient extends LogClient {
  buffered = 0;
  override bufferedAmount(): number {
    return this.buffered;
  }
}

test('the module\'s maxBackpressure applies to a connector client as uWS applies it: DROPPED while over it, and with closeOnBackpressureLimit the client is closed (1006) once the call has returned', async () => {
  const client = new BufferedClient(100);
  const h = host(client.log);
  const s = new ClientSock(client, ud(), h, { maxBackpressure: 10, closeOnBackpressureLimit: true });
  await nextTurn();
  client.buffered = 10; // at the limit: still sent (uWS drops only above it)
  assert.equal(s.send(bytes('a')), SendStatus.SUCCESS);
  client.buffered = 11;
  assert.equal(s.send(bytes('b')), SendStatus.DROPPED);
  assert.equal(s.send(bytes('c')), SendStatus.DROPPED);
  assert.deepEqual(client.log, ['send a'], 'not closed inside the send');
  await Promise.resolve();
  assert.deepEqual(client.log, ['send a', 'core closed 1006', 'close 1006 ']);

  // Without closeOnBackpressureLimit: dropped only; maxBackpressure 0 is no limit (as for uWS).
  const c2 = new BufferedClient(100);
  const s2 = new ClientSock(c2, ud(), host(c2.log), { maxBackpressure: 10, closeOnBackpressureLimit: false });
  const c3 = new BufferedClient(100);
  const s3 = new ClientSock(c3, ud(), host(c3.log), { maxBackpressure: 0, closeOnBackpressureLimit: true });
  await nextTurn();
  c2.buffered = c3.buffered = 1 << 30;
  assert.equal(s2.send(bytes('x')), SendStatus.DROPPED);
  assert.equal(s3.send(bytes('y')), SendStatus.SUCCESS);
  await nextTurn();
  assert.deepEqual([c2.log, c3.log], [[], ['send y']]);
});

test('a connector whose close() throws (close(1006) handed to a library that refuses it): the core closes its side, the throw is reported, not thrown into the caller', async () => {
  class Refusing extends LogClient {
    override close(code: number): void {
      throw new RangeError(`invalid close code ${code}`);
    }
  }
  const client = new Refusing(0);
  const s = new ClientSock(client, ud(), host(client.log));
  await nextTurn();
  s.end(1006, '');
  assert.deepEqual(client.log, ['core closed 1006', 'close failed invalid close code 1006']);
});
