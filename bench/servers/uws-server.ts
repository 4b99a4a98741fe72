/**
 * Raw uWebSockets.js benchmark server: the ceiling ringwire's I/O thread is measured against.
 * Loaded through loadUws(), so results from uWS's slow `ws` fallback are impossible.
 *
 *   node dist/bench/servers/uws-server.js [--host 127.0.0.1] [--port 0]
 * Routes (bench/servers/routes.ts): /echo, /heavy (work, then echo), /fanout (app.publish to all).
 * Prints {"port": N} once listening; exits on SIGTERM/SIGINT or when its parent goes away.
 * Everything runs on the one uWS thread: handlers run inside uWS callbacks, so sends are corked.
 */
import type { WebSocket } from 'uWebSockets.js';
import { loadUws } from '../../src/core/uws.js';
import { listenAndReport, parseServerArgs } from './args.js';
import { FANOUT_TOPIC, Route, exitWithParent } from './routes.js';
import { work, workIterations } from './work.js';

const uws = loadUws();
const { host, port } = parseServerArgs(process.argv.slice(2));
const ITERS = workIterations();

const base = {
  compression: uws.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
} as const;

const app = uws.App();
app.ws(Route.echo, {
  ...base,
  message: (ws: WebSocket<unknown>, message: ArrayBuffer, isBinary: boolean) => {
    ws.send(message, isBinary);
  },
});
app.ws(Route.heavy, {
  ...base,
  message: (ws: WebSocket<unknown>, message: ArrayBuffer, isBinary: boolean) => {
    work(ITERS);
    ws.send(message, isBinary);
  },
});
app.ws(Route.fanout, {
  ...base,
  open: (ws: WebSocket<unknown>) => {
    ws.subscribe(FANOUT_TOPIC);
  },
  message: (_ws: WebSocket<unknown>, message: ArrayBuffer, isBinary: boolean) => {
    app.publish(FANOUT_TOPIC, message, isBinary);
  },
});

listenAndReport(uws, app, host, port, 'uws-server', exitWithParent);
