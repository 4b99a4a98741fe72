/**
 * `ws` package benchmark server (the peer most Node WebSocket servers are built on).
 *
 *   node dist/bench/servers/ws-server.js [--host 127.0.0.1] [--port 0]
 * Routes (bench/servers/routes.ts) by request path: /echo, /heavy (work, then echo), /fanout
 * (send to every /fanout connection, the ws README's broadcast loop). No permessage-deflate.
 * Prints {"port": N} once listening; exits on SIGTERM/SIGINT or when its parent goes away.
 */
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import { parseServerArgs } from './args.js';
import { Route, exitWithParent } from './routes.js';
import { work, workIterations } from './work.js';

const { host, port } = parseServerArgs(process.argv.slice(2));
const ITERS = workIterations();
const fanout = new Set<WebSocket>();

// Module-level listeners: `this` is the socket (no closure per connection).
function onEcho(this: WebSocket, data: RawData, isBinary: boolean): void {
  this.send(data, { binary: isBinary });
}
function onHeavy(this: WebSocket, data: RawData, isBinary: boolean): void {
  work(ITERS);
  this.send(data, { binary: isBinary });
}
function onPublish(data: RawData, isBinary: boolean): void {
  for (const c of fanout) if (c.readyState === WebSocket.OPEN) c.send(data, { binary: isBinary });
}
function onFanoutClose(this: WebSocket): void {
  fanout.delete(this);
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024, clientTracking: false });
wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
  const path = (req.url ?? '/').split('?')[0];
  if (path === Route.echo) ws.on('message', onEcho);
  else if (path === Route.heavy) ws.on('message', onHeavy);
  else if (path === Route.fanout) {
    fanout.add(ws);
    ws.on('message', onPublish);
    ws.on('close', onFanoutClose);
  } else ws.close(1008, 'unknown path');
});
wss.on('error', (err) => {
  process.stderr.write(`ws-server: ${err.message}\n`);
  process.exit(1);
});
wss.on('listening', () => {
  const addr = wss.address();
  if (addr === null || typeof addr === 'string') throw new Error('ws-server: unexpected address');
  process.stdout.write(JSON.stringify({ port: addr.port }) + '\n');
  exitWithParent();
});
const stop = (): void => process.exit(0);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
