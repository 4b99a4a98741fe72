/**
 * socket.io benchmark server, websocket transport only (no long-polling, no compression).
 *
 *   node dist/bench/servers/socketio-server.js [--host 127.0.0.1] [--port 0]
 * Clients upgrade at /socket.io/?EIO=4&transport=websocket, get the engine.io open packet
 * `0{...}`, send `40` (or `40/fanout,`) and get the namespace connect ack `40{...}`; then:
 *   namespace "/":       `42["echo",d]` → `42["echo",d]`;  `42["heavy",d]` → work, then the same
 *   namespace "/fanout": `42/fanout,["pub",d]` → broadcast to every /fanout socket (sender included)
 * pingInterval is 10 minutes so no engine.io ping interleaves with measured replies (the load
 * generator answers pings anyway). Prints {"port": N}; exits on SIGTERM/SIGINT or parent exit.
 */
import { createServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import { parseServerArgs } from './args.js';
import { SOCKETIO_EVENT, exitWithParent } from './routes.js';
import { work, workIterations } from './work.js';

const { host, port } = parseServerArgs(process.argv.slice(2));
const ITERS = workIterations();

const http = createServer((_req, res) => {
  res.writeHead(404).end();
});
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: 600_000,
  pingTimeout: 60_000,
  maxHttpBufferSize: 16 * 1024 * 1024,
});
const fan = io.of('/fanout');

// socket.io hands listeners no socket, so (as socket.io apps do) each connection gets small closures.
io.on('connection', (socket: Socket) => {
  socket.on(SOCKETIO_EVENT.echo, (d: unknown) => {
    socket.emit(SOCKETIO_EVENT.echo, d);
  });
  socket.on(SOCKETIO_EVENT.heavy, (d: unknown) => {
    work(ITERS);
    socket.emit(SOCKETIO_EVENT.heavy, d);
  });
});
fan.on('connection', (socket: Socket) => {
  socket.on(SOCKETIO_EVENT.fanout, (d: unknown) => {
    fan.emit(SOCKETIO_EVENT.fanout, d);
  });
});

http.on('error', (err) => {
  process.stderr.write(`socketio-server: ${err.message}\n`);
  process.exit(1);
});
http.listen(port, host, () => {
  const addr = http.address();
  if (addr === null || typeof addr === 'string') throw new Error('socketio-server: unexpected address');
  process.stdout.write(JSON.stringify({ port: addr.port }) + '\n');
  exitWithParent();
});
const stop = (): void => process.exit(0);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
