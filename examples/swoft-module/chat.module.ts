// Swoft-style module on /chat: a handshake check, open/close handlers, the room controller.
//   connect  ws://HOST:PORT/chat?name=alice  → {"cmd":"opened","data":{"name":"alice","fd":N}}
import type { Context, UpgradeContext } from '../../src/module.js';
import { OnClose, OnHandshake, OnOpen, WsModule, wsModule } from './swoft.js';
import { RoomController, roomsOf, topicOf } from './controllers/room.controller.js';

@WsModule({ path: '/chat', controllers: [RoomController], messageParser: 'json', options: { maxPayloadLength: 16 * 1024 } })
class ChatModule {
  /** Swoft's checkHandshake: false refuses the connection (403). */
  @OnHandshake()
  checkHandshake(up: UpgradeContext): false | { name: string } {
    const name = new URLSearchParams(up.query).get('name') ?? '';
    return /^[\w-]{1,32}$/.test(name) ? { name } : false;
  }

  @OnOpen()
  onOpen(ctx: Context): void {
    ctx.send({ name: ctx.userData['name'], fd: ctx.fd }, { event: 'opened' });
  }

  @OnClose()
  onClose(ctx: Context): void {
    for (const room of roomsOf(ctx)) {
      ctx.publish(topicOf(room), { room, name: ctx.userData['name'] }, { event: 'room.left' });
    }
  }
}

export default wsModule(ChatModule);
