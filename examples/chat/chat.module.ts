// Chat rooms through publish/subscribe (JSON codec: {cmd, data, ref}).
//   connect:  ws://HOST:PORT/chat/<room>?name=<nick>
//   send:     {"cmd":"SAY","data":"hello"}        → everyone in the room gets {"cmd":"SAY","data":{"from","text"}}
//             {"cmd":"WHO","ref":1}               → {"cmd":"WHO","data":{"room","name","handle"},"ref":1}
import { defineModule } from '../../src/workers/define.js';

const topicOf = (room: string): string => `chat:${room}`;

export default defineModule({
  path: '/chat/:room',
  codec: 'json',
  options: { maxPayloadLength: 16 * 1024, idleTimeout: 60 },
  onUpgrade(up) {
    const name = new URLSearchParams(up.query).get('name') ?? '';
    if (!/^[\w-]{1,32}$/.test(name)) {
      up.reject(400, 'query parameter "name" must be 1-32 letters, digits, _ or -');
      return undefined;
    }
    return { name };
  },
  onConnect(ctx) {
    const room = ctx.params['room']!;
    ctx.subscribe(topicOf(room));
    ctx.publish(topicOf(room), { name: ctx.userData['name'] }, { event: 'JOIN' });
  },
  events: {
    SAY: {
      preHandler: [
        (ctx) => {
          if (typeof ctx.data !== 'string' || ctx.data.length === 0 || ctx.data.length > 1000) {
            ctx.reply({ error: 'SAY data must be a string of 1-1000 characters' });
            return false;
          }
          return undefined;
        },
      ],
      handler(ctx) {
        ctx.publish(topicOf(ctx.params['room']!), { from: ctx.userData['name'], text: ctx.data });
      },
    },
    WHO: {
      handler(ctx) {
        ctx.reply({ room: ctx.params['room'], name: ctx.userData['name'], handle: ctx.handle });
      },
    },
  },
  onDisconnect(ctx) {
    ctx.publish(topicOf(ctx.params['room']!), { name: ctx.userData['name'] }, { event: 'LEAVE' });
  },
});
