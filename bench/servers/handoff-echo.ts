/**
 * The hand-off floor: raw uWebSockets.js plus ringwire's SharedArrayBuffer rings and one worker
 * thread that copies every message back, and nothing else (no FlatBuffers record, no hooks, no
 * routing, no stats). It uses ringwire's wake-up pattern: one doorbell per event-loop turn, the
 * worker sleeping in a 1 ms futex wait then Atomics.waitAsync, the I/O thread waking for results
 * through Atomics.waitAsync, one cork per run of replies to the same socket.
 *
 * It answers "what can any design that runs handlers off the I/O thread reach here?": the
 * ping-pong gap between this server and raw uWS is the cost of the thread hand-off itself
 * (futex/eventfd wake-ups and a second busy thread on the same cores), which no handler-side
 * optimisation in ringwire can remove. Benchmark only.
 *
 *   node dist/bench/servers/handoff-echo.js [--host 127.0.0.1] [--port 0]
 * Every path upgrades; every message is echoed with its own opcode. Prints {"port": N}; exits when
 * its parent goes away.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { WebSocket } from 'uWebSockets.js';
import { Ring } from '../../src/shared/ring.js';
import { loadUws } from '../../src/core/uws.js';
import { listenAndReport, parseServerArgs } from './args.js';
import { exitWithParent } from './routes.js';

const RING_BYTES = 1 << 20;
/** Record: [u32 socket id][u8 binary][payload]. */
const HEAD = 5;

interface Rings { inbound: SharedArrayBuffer; outbound: SharedArrayBuffer }

function ioThread(): void {
  const uws = loadUws();
  const { host, port } = parseServerArgs(process.argv.slice(2));
  const inbound = Ring.create(RING_BYTES);
  const outbound = Ring.create(RING_BYTES);
  const worker = new Worker(new URL(import.meta.url), { workerData: { inbound: inbound.sab, outbound: outbound.sab } satisfies Rings });
  worker.on('error', (err) => {
    process.stderr.write(`handoff-echo: worker failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
  worker.unref();

  const sockets = new Map<number, WebSocket<{ id: number }>>();
  let nextId = 1;
  const inView = new DataView(inbound.data.buffer, inbound.data.byteOffset, inbound.data.byteLength);
  const outView = new DataView(outbound.data.buffer, outbound.data.byteOffset, outbound.data.byteLength);
  // One cork per run of consecutive replies to the same socket (as ringwire's executor does):
  // pipelined replies then leave in one write, not one syscall each.
  let runWs: WebSocket<{ id: number }> | undefined;
  const data = outbound.data;
  const sendRun = (): void => {
    for (let off = outbound.peek(); off >= 0; off = outbound.peek()) {
      const len = outbound.peekLength;
      if (sockets.get(outView.getUint32(off, true)) !== runWs) return;
      runWs!.send(data.subarray(off + HEAD, off + len), data[off + 4] === 1);
      outbound.skip();
    }
  };
  const drainResults = (): void => {
    for (let off = outbound.peek(); off >= 0; off = outbound.peek()) {
      runWs = sockets.get(outView.getUint32(off, true));
      if (runWs === undefined) outbound.skip();
      else runWs.cork(sendRun);
      outbound.release(); // space back to the worker after every run
    }
  };
  const armResults = (): void => {
    drainResults();
    const p = outbound.waitForDataAsync();
    if (p === null) setImmediate(armResults);
    else void p.then(armResults);
  };
  armResults();
  let doorbell = false;
  const ring = (): void => {
    doorbell = false;
    inbound.notify();
    if (outbound.hasData()) drainResults();
  };

  const app = uws.App().ws<{ id: number }>('/*', {
    compression: uws.DISABLED,
    maxPayloadLength: 16 * 1024 * 1024,
    maxBackpressure: 64 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      res.upgrade({ id: nextId++ }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'), context);
    },
    open: (ws) => { sockets.set(ws.getUserData().id, ws); },
    close: (ws) => { sockets.delete(ws.getUserData().id); },
    message: (ws, message, isBinary) => {
      const m = new Uint8Array(message);
      const off = inbound.reserve(HEAD + m.length);
      if (off < 0) {
        ws.end(1013, 'ring full');
        return;
      }
      inView.setUint32(off, ws.getUserData().id, true);
      inbound.data[off + 4] = isBinary ? 1 : 0;
      inbound.data.set(m, off + HEAD);
      inbound.commit();
      if (!doorbell) {
        doorbell = true;
        setImmediate(ring);
      }
    },
  });
  listenAndReport(uws, app, host, port, 'handoff-echo', exitWithParent);
}

async function workerThread(rings: Rings): Promise<void> {
  const inbound = Ring.from(rings.inbound);
  const outbound = Ring.from(rings.outbound);
  // Keeps this thread's event loop alive while it waits asynchronously (as piscina's port does).
  parentPort!.on('message', () => undefined);
  const copyBack = (data: Uint8Array, off: number, len: number): void => {
    let o = outbound.reserve(len);
    while (o === -1) {
      outbound.notify();
      outbound.waitForSpace(len, 10);
      o = outbound.reserve(len);
    }
    outbound.data.set(data.subarray(off, off + len), o);
    outbound.commit();
  };
  for (;;) {
    if (inbound.drain(copyBack) > 0) {
      outbound.notify();
      continue;
    }
    if (inbound.waitForData(1)) continue;
    const p = inbound.waitForDataAsync();
    if (p !== null) await p;
  }
}

if (isMainThread) ioThread();
else void workerThread(workerData as Rings);
