// Worker side of a Basalt-Socket-style router on ringwire.
//
// Basalt Socket names each event by its path (`/chat`, `/game`) and gives it EVENT_ hooks
// (onUpgradeHook, onConnectHook, onReceivedHook, onDisconnectHook), a preHandler list and a
// handler that receive (ws, message). Server-wide GLOBAL_ hooks run first. Here:
//
//   basaltEvent('chat', {...})    → defineModule({ path: '/chat', codec: 'raw', ... })
//   basaltGlobalHooks({...})      → defineHooks({...})
//
// Each event is a ringwire module file (modules are loaded inside the worker threads, so
// they must be files); ringwire's pipeline runs them in Basalt's order:
//   upgrade:  GLOBAL_onUpgradeHook → EVENT_onUpgradeHook
//   open:     GLOBAL_onConnectHook → EVENT_onConnectHook
//   message:  GLOBAL_onReceivedHook → EVENT_onReceivedHook → EVENT_preHandler[0..n] → EVENT_handler
//   close:    GLOBAL_onDisconnectHook → EVENT_onDisconnectHook
// The raw codec hands handlers the message bytes as Basalt does (`message` is a view into
// the ring, valid until the handler returns or first awaits: copy what you keep).
import { defineHooks, defineModule } from '../../../src/module.js';
import type { Context, ModuleSocketOptions, UpgradeContext } from '../../../src/module.js';
import { trace } from '../trace.js';

type MaybePromise<T> = T | Promise<T>;
/** Basalt's `ws`: here the ringwire connection context (send, publish, subscribe, close, userData...). */
export type BasaltSocket = Context;
/** Returning false (or replying, or closing) stops the message chain. */
export type MessageFn = (ws: BasaltSocket, message: Uint8Array) => MaybePromise<void | boolean | undefined>;
/** Reject with `up.reject(status, body)`; a returned object is merged into the connection's userData. */
export type UpgradeFn = (up: UpgradeContext) => MaybePromise<void | Record<string, unknown> | undefined>;
export type ConnectFn = (ws: BasaltSocket) => MaybePromise<void>;
export type DisconnectFn = (ws: BasaltSocket, code: number, reason: string) => MaybePromise<void>;

export interface BasaltHooks {
  onUpgradeHook?: UpgradeFn;
  onConnectHook?: ConnectFn;
  onReceivedHook?: MessageFn;
  onDisconnectHook?: DisconnectFn;
}

export interface BasaltEvent extends BasaltHooks {
  handler: MessageFn;
  preHandler?: MessageFn[];
  /** Largest message accepted (uWS closes the connection with 1009 above it). Default 16 KiB, as Basalt. */
  maxPayloadLength?: number;
  /** Other uWS socket options, passed through. */
  options?: Omit<ModuleSocketOptions, 'maxPayloadLength'>;
}

// `message` is ctx.data (for the raw codec, the payload): a hook or preHandler that sets
// `ws.data = ...` hands the next ones and the handler a modified message, as Basalt's middleware does.
const msg = (fn: MessageFn, path: string, label: string) => (ctx: Context) => {
  trace(path, label);
  return fn(ctx, ctx.data as Uint8Array);
};

function wrapHooks(scope: 'GLOBAL' | 'EVENT', h: BasaltHooks, pathOf: (ctx: { path: string }) => string) {
  return {
    onUpgrade: h.onUpgradeHook && ((up: UpgradeContext) => {
      trace(pathOf(up), `${scope}_onUpgradeHook`);
      return h.onUpgradeHook!(up);
    }),
    onConnect: h.onConnectHook && ((ctx: Context) => {
      trace(pathOf(ctx), `${scope}_onConnectHook`);
      return h.onConnectHook!(ctx);
    }),
    onReceived: h.onReceivedHook && ((ctx: Context) => {
      trace(pathOf(ctx), `${scope}_onReceivedHook`);
      return h.onReceivedHook!(ctx, ctx.data as Uint8Array);
    }),
    onDisconnect: h.onDisconnectHook && ((ctx: Context, code: number, reason: string) => {
      trace(pathOf(ctx), `${scope}_onDisconnectHook`);
      return h.onDisconnectHook!(ctx, code, reason);
    }),
  };
}

/** One Basalt event = one ringwire module file mounted on `/${name}` with the raw codec. */
export function basaltEvent(name: string, ev: BasaltEvent) {
  if (!/^[\w-]+(\/[\w-]+)*$/.test(name)) throw new TypeError(`basaltEvent: bad event name ${JSON.stringify(name)}`);
  const path = `/${name}`;
  const hooks = wrapHooks('EVENT', ev, () => path);
  return defineModule({
    path,
    codec: 'raw',
    options: { maxPayloadLength: ev.maxPayloadLength ?? 16 * 1024, ...ev.options },
    ...(hooks.onUpgrade && { onUpgrade: hooks.onUpgrade }),
    ...(hooks.onConnect && { onConnect: hooks.onConnect }),
    ...(hooks.onReceived && { onReceived: hooks.onReceived }),
    ...(hooks.onDisconnect && { onDisconnect: hooks.onDisconnect }),
    events: {
      [name]: {
        preHandler: (ev.preHandler ?? []).map((p, i) => msg(p, path, `EVENT_preHandler[${i}]`)),
        handler: msg(ev.handler, path, 'EVENT_handler'),
      },
    },
  });
}

/** The GLOBAL_ hooks file: runs before every event's own hooks. */
export function basaltGlobalHooks(h: BasaltHooks) {
  const hooks = wrapHooks('GLOBAL', h, (ctx) => ctx.path);
  return defineHooks({
    ...(hooks.onUpgrade && { onUpgrade: hooks.onUpgrade }),
    ...(hooks.onConnect && { onConnect: hooks.onConnect }),
    ...(hooks.onReceived && { onReceived: hooks.onReceived }),
    ...(hooks.onDisconnect && { onDisconnect: hooks.onDisconnect }),
  });
}
