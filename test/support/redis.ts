// A throwaway redis-server for integration tests: loopback only, a free port, no disk writes.
// startRedis() resolves null when no redis-server binary is installed; callers skip with
// REDIS_SKIP. Always stop() it (t.after); an exit hook SIGKILLs it if the test process dies first.
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { accessSync, constants } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export const REDIS_SKIP = 'redis-server not installed (apt-get install redis-server); cluster tests skipped';

export interface RedisProc {
  readonly port: number;
  /** `redis://127.0.0.1:${port}` */
  readonly url: string;
  /** Whether a redis-server process is currently running. */
  readonly running: boolean;
  /** SIGKILL the server and wait for it to exit (connections see a hard drop). */
  kill(): Promise<void>;
  /** Start it again on the same port and wait until it answers PING. */
  restart(): Promise<void>;
  /** SIGSTOP: the server hangs with its sockets open (clients see no error, just no replies). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Kill it for good (idempotent). */
  stop(): Promise<void>;
  /** The server's recent stdout/stderr, for failure messages. */
  log(): string;
}

/** Path of the redis-server binary: $REDIS_SERVER when set, else the first one on PATH; null if none. */
export function findRedisServer(): string | null {
  const env = process.env['REDIS_SERVER'];
  if (env !== undefined && env !== '') return env; // an explicit path: a wrong one fails loudly in spawn
  const candidates: string[] = [];
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) if (d !== '') candidates.push(join(d, 'redis-server'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('freePort: no port'))));
    });
  });
}

/** One PING round trip; resolves true on +PONG, false on anything else (refused, error, timeout). */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

const READY_DEADLINE_MS = 10_000;
const POLL_MS = 20;

export async function startRedis(): Promise<RedisProc | null> {
  const bin = findRedisServer();
  if (bin === null) return null;

  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let logTail = '';
  let stopped = false;
  const killOnExit = (): void => { child?.kill('SIGKILL'); };
  process.once('exit', killOnExit);

  const spawnOn = async (port: number): Promise<void> => {
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--protected-mode', 'no', '--daemonize', 'no', '--dir', tmpdir(), '--logfile', '',
    ];
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const append = (d: Buffer): void => { logTail = (logTail + d.toString()).slice(-4000); };
    c.stdout?.on('data', append);
    c.stderr?.on('data', append);
    let hasExited = false;
    let spawnError: Error | undefined;
    exited = new Promise<void>((resolve) => {
      c.once('error', (err) => { spawnError = err; hasExited = true; resolve(); });
      c.once('exit', () => { hasExited = true; resolve(); });
    });
    const deadline = Date.now() + READY_DEADLINE_MS;
    for (;;) {
      if (hasExited) {
        child = null;
        throw new Error(`redis-server on port ${port} exited before it was ready${spawnError !== undefined ? `: ${spawnError.message}` : ''}\n${logTail}`);
      }
      if (await ping(port, 500)) return;
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        await exited;
        child = null;
        throw new Error(`redis-server on port ${port} not ready within ${READY_DEADLINE_MS} ms\n${logTail}`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS)); // readiness poll interval, under a deadline
    }
  };

  const kill = async (): Promise<void> => {
    const c = child;
    if (c === null) return;
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await exited;
    child = null;
  };

  // The port is free when probed but may be taken before redis binds it: retry with a new one.
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await spawnOn(port);
      break;
    } catch (err) {
      if (attempt >= 3) {
        process.removeListener('exit', killOnExit);
        throw err;
      }
    }
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() { return child !== null; },
    kill,
    restart: async () => {
      if (stopped) throw new Error('redis: restart() after stop()');
      await kill();
      await spawnOn(port);
    },
    pause: () => {
      if (child === null || !child.kill('SIGSTOP')) throw new Error('redis: pause() without a running server');
    },
    resume: () => {
      if (child === null || !child.kill('SIGCONT')) throw new Error('redis: resume() without a running server');
    },
    stop: async () => {
      stopped = true;
      await kill();
      process.removeListener('exit', killOnExit);
    },
    log: () => logTail,
  };
}

/**
 * A redis-server of this test's own, or null (the test skipped with REDIS_SKIP) where none is
 * installed. Its stop() goes to `cleanup` (default: t.after).
 */
export async function redisFor(t: TestContext, cleanup: (stop: () => Promise<void>) => void = (f) => { t.after(f); }): Promise<RedisProc | null> {
  const redis = await startRedis();
  if (redis === null) {
    t.skip(REDIS_SKIP);
    return null;
  }
  cleanup(() => redis.stop());
  return redis;
}
