/**
 * Raw uWebSockets.js echo server: the ceiling ringwire's I/O thread is measured against.
 * Loaded through loadUws(), so the slow `ws` fallback can never be what gets benchmarked.
 *
 *   node dist/bench/servers/uws-echo.js [--host 127.0.0.1] [--port 0]
 * Prints one JSON line {"port": N} on stdout once listening; serves until SIGTERM/SIGINT or its parent exits.
 * Every path upgrades; every message is echoed with its own opcode (uWS corks inside callbacks).
 */
import { loadUws } from '../../src/core/uws.js';
import { listenAndReport, parseServerArgs } from './args.js';
import { exitWithParent } from './routes.js';

const uws = loadUws();
const { host, port } = parseServerArgs(process.argv.slice(2));

const app = uws.App().ws('/*', {
  compression: uws.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
});

listenAndReport(uws, app, host, port, 'uws-echo', exitWithParent);
