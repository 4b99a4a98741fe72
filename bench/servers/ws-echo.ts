/**
 * `ws` package echo server (the peer most Node WebSocket servers are built on).
 *
 *   node dist/bench/servers/ws-echo.js [--host 127.0.0.1] [--port 0]
 * Prints one JSON line {"port": N} on stdout once listening; serves until SIGTERM/SIGINT or its parent exits.
 * No permessage-deflate (uws-echo has none either); every message echoed with its own opcode.
 */
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { parseServerArgs } from './args.js';
import { exitWithParent } from './routes.js';

const { host, port } = parseServerArgs(process.argv.slice(2));

// Module-level listener: `this` is the socket (no closure per connection).
function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  this.send(data, { binary: isBinary });
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024, clientTracking: false });
wss.on('connection', (ws) => {
  ws.on('message', onMessage);
});
wss.on('error', (err) => {
  process.stderr.write(`ws-echo: ${err.message}\n`);
  process.exit(1);
});
wss.on('listening', () => {
  const addr = wss.address();
  if (addr === null || typeof addr === 'string') throw new Error('ws-echo: unexpected address');
  process.stdout.write(JSON.stringify({ port: addr.port }) + '\n');
  exitWithParent();
});
const stop = (): void => process.exit(0);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
