// The `/chat` event: a room everyone on /chat shares.
//   connect  ws://HOST:PORT/chat?name=alice   → "welcome alice"
//   send     "hello"                           → every /chat client gets "alice: hello"
import { basaltEvent } from '../basalt/event.js';

const ROOM = 'basalt:chat';
const text = new TextDecoder('utf-8', { fatal: false });

export default basaltEvent('chat', {
  maxPayloadLength: 4096,
  onUpgradeHook(up) {
    const name = new URLSearchParams(up.query).get('name') ?? '';
    if (!/^[\w-]{1,32}$/.test(name)) {
      up.reject(400, 'query parameter "name" must be 1-32 letters, digits, _ or -');
      return undefined;
    }
    return { name };
  },
  onConnectHook(ws) {
    ws.subscribe(ROOM);
    ws.send(`welcome ${String(ws.userData['name'])}`);
  },
  onReceivedHook(ws) {
    ws.userData['said'] = Number(ws.userData['said'] ?? 0) + 1;
  },
  preHandler: [
    (ws, message) => {
      if (message.length > 1000) {
        ws.reply('error: messages are at most 1000 bytes');
        return false;
      }
      return undefined;
    },
  ],
  handler(ws, message) {
    // `message` is a view into the ring: decoding it here makes the copy we publish.
    ws.publish(ROOM, `${String(ws.userData['name'])}: ${text.decode(message)}`);
  },
  onDisconnectHook(ws) {
    ws.publish(ROOM, `${String(ws.userData['name'])} left`);
  },
});
