// The `/game` event: per-connection state kept in userData (in the worker that owns the
// connection; every event of a connection runs on that one worker, in order).
//   send "move 3 4"  → {"moves":1,"x":3,"y":4}
import { basaltEvent } from '../basalt/event.js';

const text = new TextDecoder();

export default basaltEvent('game', {
  onConnectHook(ws) {
    ws.userData['moves'] = 0;
  },
  handler(ws, message) {
    const m = /^move (-?\d{1,6}) (-?\d{1,6})$/.exec(text.decode(message));
    if (m === null) {
      ws.reply(JSON.stringify({ error: 'send "move X Y"' }));
      return;
    }
    const moves = Number(ws.userData['moves']) + 1;
    ws.userData['moves'] = moves;
    ws.reply(JSON.stringify({ moves, x: Number(m[1]), y: Number(m[2]) }));
  },
});
