/**
 * ringwire benchmark server: the echo, heavy and fanout modules of bench/modules (routes as in
 * bench/servers/routes.ts), every server option tunable from the command line.
 *
 *   node dist/bench/servers/ringwire-server.js [--host 127.0.0.1] [--port 0] [--workers N]
 *        [--ring BYTES] [--batch N] [--spin us] [--block ms]
 * Options left out keep ringwire's defaults (src/core/options.ts). Prints {"port": N} once
 * listening; graceful close on SIGTERM/SIGINT; exits when its parent goes away.
 */
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/core/server.js';
import type { ServerOptions } from '../../src/core/options.js';
import { exitWithParent } from './routes.js';

const MODULES = ['echo', 'heavy', 'fanout'].map((m) => fileURLToPath(new URL(`../modules/${m}.module.js`, import.meta.url)));

const FLAGS = {
  '--workers': 'workers',
  '--ring': 'ringBytes',
  '--batch': 'drainBatch',
  '--spin': 'idleSpinMicros',
  '--block': 'idleBlockMs',
} as const;

export function parseRingwireArgs(argv: readonly string[]): { host: string; port: number; options: Partial<ServerOptions> } {
  let host = '127.0.0.1';
  let port = 0;
  const options: Record<string, number> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!;
    const v = argv[i + 1];
    if (v === undefined) throw new TypeError(`${k} needs a value`);
    if (k === '--host') { host = v; continue; }
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`${k} must be a non-negative integer`);
    if (k === '--port') port = n;
    else if (k in FLAGS) options[FLAGS[k as keyof typeof FLAGS]] = n;
    else throw new TypeError(`unknown argument ${k}; flags: --host --port ${Object.keys(FLAGS).join(' ')}`);
  }
  return { host, port, options };
}

const { host, port, options } = parseRingwireArgs(process.argv.slice(2));
const server = createServer({ ...options, modules: MODULES });
const bound = await server.listen(port, host);
const o = server.options;
// The resolved settings ride along, so a report can say what the defaults were.
process.stdout.write(JSON.stringify({
  port: bound,
  settings: { workers: o.workers, ringBytes: o.ringBytes, drainBatch: o.drainBatch, idleSpinMicros: o.idleSpinMicros, idleBlockMs: o.idleBlockMs },
}) + '\n');
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();
