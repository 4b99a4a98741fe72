/** Integration-test helpers: real ws clients with promise-based receive, fixture paths. */
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { BroadcastChannel } from 'node:worker_threads';
import { decodeFrame, encodeFrame } from '../src/shared/wire.js';

/**
 * Resolves once `check()` holds; rejects naming `what` after `ms`. A condition poll under a
 * deadline (for state that has no event to await, e.g. server.stats()), never a sleep: it
 * re-checks on every turn of the event loop, or every `everyMs` when that is given.
 */
export async function until(what: string, check: () => boolean, ms = 20_000, everyMs = 0): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise<void>((resolve) => (everyMs > 0 ? setTimeout(resolve, everyMs) : setImmediate(resolve)));
  }
}

/**
 * The gate of test/fixtures/modules/gate.module.ts: `arm(c)` hands the worker the gate (over a
 * BroadcastChannel, so it asks until the worker has it); a GATE message then blocks that worker
 * until `open()`.
 */
export class WorkerGate {
  private readonly ch = new BroadcastChannel('rw-test-gate');
  private readonly sab = new SharedArrayBuffer(4);

  async arm(c: Client): Promise<void> {
    for (;;) {
      this.ch.postMessage(this.sab);
      if ((await c.call('ARMED')).text === 'yes') return;
    }
  }

  open(): void {
    const g = new Int32Array(this.sab);
    Atomics.store(g, 0, 1);
    Atomics.notify(g, 0);
  }

  /** Opens the gate too: a test failing before open() must not leave the worker blocked. */
  close(): void {
    this.open();
    this.ch.close();
  }
}

/** `p`, or a rejection naming `what` after `ms`: an awaited event fails fast instead of at the runner's timeout. */
export async function within<T>(what: string, p: Promise<T>, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/modules/${name}.js`, import.meta.url));
}

export function example(path: string): string {
  return fileURLToPath(new URL(`../examples/${path}.js`, import.meta.url));
}

export interface Frame { event: string; ref: number; payload: Uint8Array; text: string }

/** A real `ws` client whose messages can be awaited in order. */
export class Client {
  readonly ws: WebSocket;
  private queue: ({ data: Buffer; binary: boolean } | null)[] = [];
  private head = 0;
  private count = 0;
  private waiter: (() => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(url: string, options?: WebSocket.ClientOptions) {
    this.ws = new WebSocket(url, options);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`unexpected response ${res.statusCode}`), { statusCode: res.statusCode }));
      });
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.count++;
      this.queue.push({ data, binary: isBinary });
      const w = this.waiter;
      this.waiter = null;
      w?.();
    });
    this.ws.on('error', () => undefined);
  }

  static async open(url: string, options?: WebSocket.ClientOptions): Promise<Client> {
    const c = new Client(url, options);
    await c.opened;
    return c;
  }

  /** Messages received so far (consumed or not). */
  get received(): number {
    return this.count;
  }

  /** Next raw message (resolves as soon as one is there). */
  async nextRaw(): Promise<{ data: Buffer; binary: boolean }> {
    while (this.head >= this.queue.length) {
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
    const m = this.queue[this.head]!;
    this.queue[this.head] = null; // consumed messages are not retained
    this.head++;
    if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return m;
  }

  /** Next message decoded as a binary-codec frame. */
  async next(): Promise<Frame> {
    const m = await this.nextRaw();
    const f = decodeFrame(new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.length));
    return { event: f.event, ref: f.ref, payload: f.payload, text: Buffer.from(f.payload).toString() };
  }

  /** Next message parsed as JSON text (json codec). */
  async nextJson(): Promise<{ cmd: string; data: unknown; ref?: number }> {
    const m = await this.nextRaw();
    return JSON.parse(m.data.toString()) as { cmd: string; data: unknown; ref?: number };
  }

  emit(event: string, payload: string | Uint8Array = '', ref = 0): void {
    this.ws.send(encodeFrame({ event, ref, payload }));
  }

  /** Send and await the next frame (request/response on an otherwise quiet connection). */
  async call(event: string, payload: string | Uint8Array = '', ref = 1): Promise<Frame> {
    this.emit(event, payload, ref);
    return this.next();
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

export interface JsonMsg { cmd: string; data: Record<string, unknown>; ref?: number }

/** A json-codec client that can wait for a given command while keeping the others in order. */
export class JsonClient {
  readonly c: Client;
  private stash: JsonMsg[] = [];
  constructor(c: Client) {
    this.c = c;
  }
  static async open(url: string): Promise<JsonClient> {
    return new JsonClient(await Client.open(url));
  }
  send(cmd: string, data: unknown, ref = 1): void {
    this.c.ws.send(JSON.stringify({ cmd, data, ref }));
  }
  /** The next message with this cmd (others stay queued, in order). */
  async next(cmd: string): Promise<JsonMsg> {
    const i = this.stash.findIndex((m) => m.cmd === cmd);
    if (i >= 0) return this.stash.splice(i, 1)[0]!;
    for (;;) {
      const m = await this.c.nextJson() as JsonMsg;
      if (m.cmd === cmd) return m;
      this.stash.push(m);
    }
  }
  async call(cmd: string, data: unknown): Promise<JsonMsg> {
    this.send(cmd, data);
    for (;;) {
      const m = await this.nextAny();
      if ((m.cmd === cmd || m.cmd === 'error') && m.ref === 1) return m;
      this.stash.push(m);
    }
  }
  private async nextAny(): Promise<JsonMsg> {
    return await this.c.nextJson() as JsonMsg;
  }
  /** Every message received so far that is not consumed, and those still arriving until `cmd`. */
  pending(cmd: string): JsonMsg[] {
    return this.stash.filter((m) => m.cmd === cmd);
  }
}

/** The labels one fixture path posted, without the path: `of('/a')(sink.labels)`. */
export const of = (path: string) => (labels: string[]): string[] =>
  labels.filter((l) => l.startsWith(`${path} `)).map((l) => l.slice(path.length + 1));

/** Collects labels posted by fixtures on a BroadcastChannel (works across worker threads). */
export class LabelSink {
  readonly labels: string[] = [];
  private readonly ch: BroadcastChannel;
  private waiters: { pred: (l: string[]) => boolean; resolve: () => void }[] = [];

  constructor(name: string) {
    this.ch = new BroadcastChannel(name);
    this.ch.onmessage = (ev: unknown) => {
      this.labels.push(String((ev as { data: unknown }).data));
      this.waiters = this.waiters.filter((w) => {
        if (w.pred(this.labels)) {
          w.resolve();
          return false;
        }
        return true;
      });
    };
  }

  /** Resolves once `pred(labels)` holds. */
  until(pred: (labels: string[]) => boolean): Promise<void> {
    if (pred(this.labels)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  close(): void {
    this.ch.close();
  }
}
