// A Swoft-style WebSocket module layer on ringwire (runs in the worker threads).
//
// Swoft declares a module with @WsModule(path, controllers, messageParser), handshake/open/
// close handlers with @OnHandshake/@OnOpen/@OnClose, and controllers whose methods handle
// commands with @WsController(prefix) + @MessageMapping(command): the JSON message
// {"cmd":"room.join","data":...} runs RoomController.join(data). Here the same annotations
// are TypeScript standard decorators, and wsModule(ModuleClass) turns the annotated classes
// into one ringwire module definition:
//
//   events['room.join'] = { handler: ctx => reply(roomController.join(ctx.data, ctx)) }
//
// The module file default-exports that definition, because ringwire loads module files
// inside its worker threads: every worker builds its own controller instances (singletons
// per worker, like Swoft's beans per worker process).
import { defineModule } from '../../src/module.js';
import type { Context, EventDefinition, ModuleSocketOptions, UpgradeContext } from '../../src/module.js';

// Decorator metadata (context.metadata) needs Symbol.metadata, which Node 20 lacks; TypeScript's
// decorator code uses it when present. This module is imported before any decorated class runs.
(Symbol as unknown as { metadata?: symbol }).metadata ??= Symbol.for('Symbol.metadata');

type MaybePromise<T> = T | Promise<T>;
type Constructor<T = object> = new () => T;
/** A @MessageMapping method: gets the command's data and the connection; a returned value is the reply. */
export type CommandMethod = (data: unknown, ctx: Context) => unknown;

const KEY = Symbol('swoft');

interface Meta {
  prefix?: string;
  commands?: { method: string; command: string }[];
  module?: WsModuleOptions;
  handshake?: string;
  open?: string;
  close?: string;
}

function meta(m: DecoratorMetadata): Meta {
  const bag = m as Record<symbol, Meta | undefined>;
  // Own entry per class (metadata objects inherit from the parent class's).
  if (!Object.prototype.hasOwnProperty.call(bag, KEY)) bag[KEY] = {};
  return bag[KEY]!;
}

function metaOf(cls: Constructor): Meta {
  const m = (cls as unknown as Record<symbol, DecoratorMetadata | undefined>)[(Symbol as unknown as { metadata: symbol }).metadata];
  return (m as Record<symbol, Meta | undefined> | undefined)?.[KEY] ?? {};
}

/** @WsController(prefix): commands of this class are `${prefix}.${command}`. Default prefix: class name without "Controller", lower-cased. */
export function WsController(prefix?: string) {
  return (_cls: Constructor, ctx: ClassDecoratorContext) => {
    meta(ctx.metadata).prefix = prefix ?? String(ctx.name).replace(/Controller$/, '').toLowerCase();
  };
}

/** @MessageMapping(command): this method handles `${prefix}.${command}` (default: the method name). */
export function MessageMapping(command?: string) {
  return (_fn: CommandMethod, ctx: ClassMethodDecoratorContext) => {
    const m = meta(ctx.metadata);
    (m.commands ??= []).push({ method: String(ctx.name), command: command ?? String(ctx.name) });
  };
}

export interface WsModuleOptions {
  /** Route pattern, e.g. '/chat' or '/chat/:room'. */
  path: string;
  controllers: Constructor[];
  /** Swoft's JsonParser is the JSON {cmd, data, ref} codec; 'binary' is ringwire's FlatBuffers frame. */
  messageParser?: 'json' | 'binary';
  /** uWS socket options of this module. */
  options?: ModuleSocketOptions;
}

/** @WsModule({ path, controllers, messageParser }) on the module class. */
export function WsModule(options: WsModuleOptions) {
  return (_cls: Constructor, ctx: ClassDecoratorContext) => {
    meta(ctx.metadata).module = options;
  };
}

/** @OnHandshake: (up) => false to refuse (403), an object to keep in userData, or up.reject(...) yourself. */
export function OnHandshake() {
  return (_fn: (up: UpgradeContext) => MaybePromise<unknown>, ctx: ClassMethodDecoratorContext) => {
    meta(ctx.metadata).handshake = String(ctx.name);
  };
}

/** @OnOpen: (ctx) after the connection opened. */
export function OnOpen() {
  return (_fn: (ctx: Context) => MaybePromise<void>, ctx: ClassMethodDecoratorContext) => {
    meta(ctx.metadata).open = String(ctx.name);
  };
}

/** @OnClose: (ctx, code, reason) after the connection closed. */
export function OnClose() {
  return (_fn: (ctx: Context, code: number, reason: string) => MaybePromise<void>, ctx: ClassMethodDecoratorContext) => {
    meta(ctx.metadata).close = String(ctx.name);
  };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

/** Run a command method; its value (or its promise's) is the reply. Sync methods stay sync. */
function commandHandler(instance: object, method: CommandMethod) {
  return (ctx: Context): void | Promise<void> => {
    const r = method.call(instance, ctx.data, ctx);
    if (isThenable(r)) {
      return Promise.resolve(r).then((v) => {
        if (v !== undefined && !ctx.replied) ctx.reply(v);
      });
    }
    if (r !== undefined && !ctx.replied) ctx.reply(r);
    return undefined;
  };
}

/** @OnHandshake's answer: false refuses (403), an object is merged into userData. */
function handshakeResult(up: UpgradeContext, r: unknown): Record<string, unknown> | undefined {
  if (r === false) {
    if (!up.rejected) up.reject(403, 'handshake refused');
    return undefined;
  }
  return r !== null && typeof r === 'object' ? (r as Record<string, unknown>) : undefined;
}

/** The ringwire module definition of a @WsModule class: default-export it from the module file. */
export function wsModule(ModuleClass: Constructor) {
  const m = metaOf(ModuleClass);
  if (m.module === undefined) throw new TypeError(`${ModuleClass.name} has no @WsModule({...})`);
  const mod = new ModuleClass() as Record<string, unknown>;
  const bound = (name: string | undefined) => (name === undefined ? undefined : (mod[name] as (...a: unknown[]) => unknown).bind(mod));
  const events: Record<string, EventDefinition> = {};
  for (const C of m.module.controllers) {
    const cm = metaOf(C);
    if (cm.prefix === undefined) throw new TypeError(`${C.name} has no @WsController()`);
    const instance = new C() as Record<string, unknown>;
    for (const { method, command } of cm.commands ?? []) {
      const cmd = `${cm.prefix}.${command}`;
      if (events[cmd] !== undefined) throw new TypeError(`command ${cmd} is mapped twice`);
      events[cmd] = { handler: commandHandler(instance, instance[method] as CommandMethod) };
    }
  }
  const handshake = bound(m.handshake);
  const open = bound(m.open);
  const close = bound(m.close);
  return defineModule({
    path: m.module.path,
    codec: m.module.messageParser ?? 'json',
    ...(m.module.options && { options: m.module.options }),
    events,
    ...(handshake && {
      onUpgrade: (up: UpgradeContext) => {
        const r = handshake(up);
        return isThenable(r) ? Promise.resolve(r).then((v) => handshakeResult(up, v)) : handshakeResult(up, r);
      },
    }),
    ...(open && { onConnect: open as (ctx: Context) => MaybePromise<void> }),
    ...(close && { onDisconnect: close as (ctx: Context, code: number, reason: string) => MaybePromise<void> }),
  });
}
