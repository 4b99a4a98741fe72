/**
 * ringwire echo server for the end-to-end benchmarks (child process).
 *
 *   node dist/bench/e2e/ringwire-echo-server.js [--port 0] [--workers N] [--ring BYTES] [--batch N] [--spin us] [--block ms]
 * Prints one JSON line {"port": N} once listening; graceful close on SIGTERM/SIGINT; exits when its
 * parent goes away.
 * The echo module uses the default binary FlatBuffers codec: the load generator sends
 * pre-built WireFrame messages and gets WireFrame replies of the same size.
 */
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/core/server.js';
import { exitWithParent } from '../servers/routes.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`--${name} must be a non-negative integer`);
  return v;
}

const server = createServer({
  modules: [fileURLToPath(new URL('../../examples/echo/echo.module.js', import.meta.url))],
  workers: arg('workers', 1),
  ringBytes: arg('ring', 1 << 20),
  drainBatch: arg('batch', 4096),
  idleSpinMicros: arg('spin', 0),
  idleBlockMs: arg('block', 1),
});
const port = await server.listen(arg('port', 0), '127.0.0.1');
process.stdout.write(JSON.stringify({ port }) + '\n');
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();
