// Swoft-style controller for chat rooms (publish/subscribe through the I/O thread, so the
// members of a room may live on different workers).
//   {"cmd":"room.join","data":"lobby","ref":1}            → reply {"room":"lobby"}; others in it get room.joined
//   {"cmd":"room.say","data":{"room":"lobby","text":"hi"}} → everyone in the room gets room.said {from, text}
//   {"cmd":"room.leave","data":"lobby"}                    → reply {"left":"lobby"}; others get room.left
import type { Context } from '../../../src/module.js';
import { MessageMapping, WsController } from '../swoft.js';

export const topicOf = (room: string): string => `swoft:room:${room}`;

/** The rooms a connection joined (kept in its userData, in the worker that owns it). */
export function roomsOf(ctx: Context): Set<string> {
  let rooms = ctx.userData['rooms'] as Set<string> | undefined;
  if (rooms === undefined) {
    rooms = new Set();
    ctx.userData['rooms'] = rooms;
  }
  return rooms;
}

function roomName(data: unknown): string | null {
  return typeof data === 'string' && /^[\w-]{1,32}$/.test(data) ? data : null;
}

@WsController('room')
export class RoomController {
  @MessageMapping()
  join(data: unknown, ctx: Context): unknown {
    const room = roomName(data);
    if (room === null) return { error: 'room.join wants a room name (1-32 letters, digits, _ or -)' };
    roomsOf(ctx).add(room);
    ctx.subscribe(topicOf(room));
    ctx.publish(topicOf(room), { room, name: ctx.userData['name'] }, { event: 'room.joined', exceptSelf: true });
    return { room };
  }

  @MessageMapping()
  say(data: unknown, ctx: Context): unknown {
    const { room, text } = (data ?? {}) as { room?: unknown; text?: unknown };
    if (typeof room !== 'string' || !roomsOf(ctx).has(room)) return { error: 'join the room first' };
    if (typeof text !== 'string' || text.length === 0 || text.length > 1000) return { error: 'text must be 1-1000 characters' };
    ctx.publish(topicOf(room), { room, from: ctx.userData['name'], text }, { event: 'room.said' });
    return undefined;
  }

  @MessageMapping()
  leave(data: unknown, ctx: Context): unknown {
    const room = roomName(data);
    if (room === null || !roomsOf(ctx).delete(room)) return { error: 'not in that room' };
    ctx.unsubscribe(topicOf(room));
    ctx.publish(topicOf(room), { room, name: ctx.userData['name'] }, { event: 'room.left' });
    return { left: room };
  }
}
