/**
 * ringwire benchmark server: the echo, heavy and fanout modules of bench/modules (routes as in
 * bench/servers/routes.ts), every server option tunable from the command line.
 *
 *   node dist/bench/servers/ringwire-server.js [--host 127.0.0.1] [--port 0] [--workers N]
 *        [--ring BYTES] [--batch N] [--spin us] [--block ms]
 *        [--cluster-url redis://127.0.0.1:PORT [--node-id ID] [--cluster-prefix P]] [--stats-file PATH]
 * Options left out keep ringwire's defaults (src/core/options.ts). Prints {"port": N} once
 * listening (with --cluster-url: once the Redis bus is connected, and the line carries
 * `cluster: {nodeId, prefix}`); graceful close on SIGTERM/SIGINT; exits when its parent goes away.
 * --stats-file: on SIGTERM/SIGINT, server.stats() is written there as JSON before the server closes
 * (the cluster fan-out scenario reads the bus counters from it).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/core/server.js';
import type { ClusterOptions, ServerOptions } from '../../src/core/options.js';
import { exitWithParent } from './routes.js';

const MODULES = ['echo', 'heavy', 'fanout'].map((m) => fileURLToPath(new URL(`../modules/${m}.module.js`, import.meta.url)));

const FLAGS = {
  '--workers': 'workers',
  '--ring': 'ringBytes',
  '--batch': 'drainBatch',
  '--spin': 'idleSpinMicros',
  '--block': 'idleBlockMs',
} as const;

/** String-valued flags (the cluster ones need --cluster-url). */
const STRING_FLAGS = ['--host', '--cluster-url', '--node-id', '--cluster-prefix', '--stats-file'] as const;

export interface RingwireArgs {
  host: string;
  port: number;
  options: Partial<ServerOptions>;
  /** --stats-file: where server.stats() goes on SIGTERM/SIGINT (null: nowhere). */
  statsFile: string | null;
}

export function parseRingwireArgs(argv: readonly string[]): RingwireArgs {
  let host = '127.0.0.1';
  let port = 0;
  let statsFile: string | null = null;
  const options: Record<string, number> = {};
  const cluster: Partial<Record<'url' | 'nodeId' | 'prefix', string>> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!;
    const v = argv[i + 1];
    if (v === undefined) throw new TypeError(`${k} needs a value`);
    if ((STRING_FLAGS as readonly string[]).includes(k)) {
      if (k === '--host') host = v;
      else if (k === '--cluster-url') cluster.url = v;
      else if (k === '--node-id') cluster.nodeId = v;
      else if (k === '--cluster-prefix') cluster.prefix = v;
      else statsFile = v;
      continue;
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`${k} must be a non-negative integer`);
    if (k === '--port') port = n;
    else if (k in FLAGS) options[FLAGS[k as keyof typeof FLAGS]] = n;
    else throw new TypeError(`unknown argument ${k}; flags: --port ${Object.keys(FLAGS).join(' ')} ${STRING_FLAGS.join(' ')}`);
  }
  if (cluster.url === undefined && (cluster.nodeId !== undefined || cluster.prefix !== undefined)) {
    throw new TypeError('--node-id and --cluster-prefix need --cluster-url');
  }
  // Validated by createServer (src/core/options.ts resolveOptions).
  const out: Partial<ServerOptions> = { ...options };
  if (cluster.url !== undefined) out.cluster = { ...cluster, url: cluster.url } satisfies ClusterOptions;
  return { host, port, options: out, statsFile };
}

const { host, port, options, statsFile } = parseRingwireArgs(process.argv.slice(2));
const server = createServer({ ...options, modules: MODULES });
const bound = await server.listen(port, host);
const o = server.options;
// The resolved settings ride along, so a report can say what the defaults were.
process.stdout.write(JSON.stringify({
  port: bound,
  settings: { workers: o.workers, ringBytes: o.ringBytes, drainBatch: o.drainBatch, idleSpinMicros: o.idleSpinMicros, idleBlockMs: o.idleBlockMs },
  ...(o.cluster !== null ? { cluster: { nodeId: server.nodeId, prefix: o.cluster.prefix ?? 'rw' } } : {}),
}) + '\n');
const stop = (): void => {
  if (statsFile !== null) {
    try {
      writeFileSync(statsFile, JSON.stringify(server.stats()) + '\n');
    } catch (err) {
      process.stderr.write(`ringwire-server: cannot write --stats-file ${statsFile}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  void server.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();
