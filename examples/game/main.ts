// The turn-based game example: `node dist/examples/game/main.js` (PORT, HOST, WORKERS from the environment).
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/index.js';

const port = Number(process.env['PORT'] ?? 9002);
const host = process.env['HOST'] ?? '127.0.0.1';
const server = createServer({
  modules: [fileURLToPath(new URL('./game.module.js', import.meta.url))],
  workers: Number(process.env['WORKERS'] ?? 2),
  // Every player of one game on the same worker (the game state lives there).
  uidAffinity: { query: 'game' },
  lifecycle: {
    onReady({ port: p }) {
      console.log(`ringwire game example on ws://${host}:${p}/game/<id>?game=<id>`);
      console.log('  send {"cmd":"JOIN","data":{"name":"alice"}} then {"cmd":"MOVE","data":{"n":3}} on your turn');
      console.log('  reconnect with &rw_resume=<token from the latest "session" message> to resume after a drop (single use)');
    },
  },
});
await server.listen(port, host);
const stop = (): void => void server.close();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
