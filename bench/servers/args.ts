import type { TemplatedApp } from 'uWebSockets.js';
import type { loadUws } from '../../src/core/uws.js';

/** `--host H --port N` for the baseline servers (default 127.0.0.1, port 0 = any free port). */
export function parseServerArgs(argv: readonly string[]): { host: string; port: number } {
  let host = '127.0.0.1';
  let port = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--host' && v !== undefined) { host = v; i++; }
    else if (a === '--port' && v !== undefined) {
      port = Number(v);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError('--port must be an integer in 0..65535');
      i++;
    } else throw new TypeError(`unknown argument ${String(a)} (use --host H --port N)`);
  }
  return { host, port };
}

/**
 * Listen, print `{"port": N}` on stdout, and exit on SIGTERM/SIGINT (the raw uWS baselines).
 * `then` runs once listening (e.g. exitWithParent).
 */
export function listenAndReport(uws: ReturnType<typeof loadUws>, app: TemplatedApp, host: string, port: number,
  name: string, then?: () => void): void {
  app.listen(host, port, (listenSocket) => {
    if (listenSocket === false) {
      process.stderr.write(`${name}: cannot listen on ${host}:${port}\n`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ port: uws.us_socket_local_port(listenSocket) }) + '\n');
    const stop = (): void => {
      uws.us_listen_socket_close(listenSocket);
      process.exit(0);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    then?.();
  });
}
