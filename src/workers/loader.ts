/**
 * Loads module and hooks files inside a worker and flattens them into the arrays the
 * pipeline runs with a plain index loop (fastify hooks habit): one array per stage,
 * global hooks before module hooks, precomputed once per worker.
 */
import { ModuleLoadError } from '../shared/errors.js';
import { codecByName, type Codec } from '../shared/wire.js';
import { BROADCAST_TOPIC_PREFIX } from '../shared/constants.js';
import type { ModuleDescriptor } from '../shared/tasks.js';
import {
  asHooks, asModule, type ConnectHook, type DisconnectHook, type ErrorHook, type HooksDefinition,
  type MessageHook, type ModuleDefinition, type UpgradeHook, type CodecName, type AwayHook, type ResumeHook,
  type SubscribeHook, type DrainHook,
} from './define.js';

export interface RouteRt {
  readonly name: string;
  /** 1-based numeric id (definition order) for clients that send event ids. */
  readonly id: number;
  /** GLOBAL onReceived → EVENT onReceived → preHandler[0..n] → handler. */
  readonly chain: readonly MessageHook[];
}

export interface ModuleRt {
  readonly id: number;
  readonly file: string;
  readonly def: ModuleDefinition;
  readonly path: string;
  readonly paramNames: readonly string[];
  readonly codec: Codec;
  readonly upgrade: readonly UpgradeHook[];
  readonly connect: readonly ConnectHook[];
  readonly disconnect: readonly DisconnectHook[];
  readonly away: readonly AwayHook[];
  readonly resume: readonly ResumeHook[];
  readonly subscribe: readonly SubscribeHook[];
  readonly drain: readonly DrainHook[];
  /** Module onError first (more specific), then the global one. */
  readonly errors: readonly ErrorHook[];
  readonly routes: ReadonlyMap<string, RouteRt>;
  readonly routeById: readonly (RouteRt | undefined)[];
  /** Catch-all (module.handler), also the single route of raw modules. */
  readonly fallback: RouteRt | null;
  readonly broadcastTopic: string;
}

export interface Loaded {
  readonly modules: readonly ModuleRt[];
  readonly hooks: HooksDefinition;
}

async function importDefault(file: string): Promise<unknown> {
  let mod: { default?: unknown };
  try {
    mod = (await import(file)) as { default?: unknown };
  } catch (err) {
    throw new ModuleLoadError(`${file}: failed to load: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  return mod.default;
}

export function paramNamesOf(path: string): string[] {
  const names: string[] = [];
  for (const seg of path.split('/')) if (seg.startsWith(':')) names.push(seg.slice(1));
  return names;
}

function push<T>(list: T[], fn: T | undefined): void {
  if (fn !== undefined) list.push(fn);
}

function buildModule(id: number, file: string, def: ModuleDefinition, hooks: HooksDefinition,
  defaultCodec: CodecName): ModuleRt {
  const upgrade: UpgradeHook[] = [];
  push(upgrade, hooks.onUpgrade);
  push(upgrade, def.onUpgrade);
  const connect: ConnectHook[] = [];
  push(connect, hooks.onConnect);
  push(connect, def.onConnect);
  const disconnect: DisconnectHook[] = [];
  push(disconnect, hooks.onDisconnect);
  push(disconnect, def.onDisconnect);
  const away: AwayHook[] = [];
  push(away, hooks.onAway);
  push(away, def.onAway);
  const resume: ResumeHook[] = [];
  push(resume, hooks.onResume);
  push(resume, def.onResume);
  const subscribe: SubscribeHook[] = [];
  push(subscribe, hooks.onSubscribe);
  push(subscribe, def.onSubscribe);
  const drain: DrainHook[] = [];
  push(drain, hooks.onDrain);
  push(drain, def.onDrain);
  const errors: ErrorHook[] = [];
  push(errors, def.onError);
  push(errors, hooks.onError);
  const head: MessageHook[] = [];
  push(head, hooks.onReceived);
  push(head, def.onReceived);
  const routes = new Map<string, RouteRt>();
  const routeById: (RouteRt | undefined)[] = [undefined];
  let n = 0;
  for (const [name, ev] of Object.entries(def.events ?? {})) {
    const pre = ev.preHandler === undefined ? [] : Array.isArray(ev.preHandler) ? ev.preHandler : [ev.preHandler];
    const route: RouteRt = { name, id: ++n, chain: [...head, ...pre, ev.handler] };
    routes.set(name, route);
    routeById.push(route);
  }
  const codecName = def.codec ?? defaultCodec;
  if (codecName === 'raw' && n + (def.handler ? 1 : 0) !== 1) {
    // defineModule checks this for `codec: 'raw'`; a module that takes the server's raw codec is
    // checked here: a raw frame has no event, so every message would go to one handler, the others never running.
    throw new ModuleLoadError(`${file}: a raw-codec module must have exactly one handler (module.handler or one event), this one has ${n + (def.handler ? 1 : 0)}`);
  }
  let fallback: RouteRt | null = def.handler ? { name: '', id: 0, chain: [...head, def.handler] } : null;
  if (codecName === 'raw' && fallback === null) fallback = routeById[1] ?? null;
  return {
    id, file, def, path: def.path, paramNames: paramNamesOf(def.path), codec: codecByName(codecName),
    upgrade, connect, disconnect, away, resume, subscribe, drain, errors, routes, routeById, fallback,
    broadcastTopic: BROADCAST_TOPIC_PREFIX + String(id),
  };
}

export async function loadAll(files: readonly string[], hooksFile: string | null,
  defaultCodec: CodecName): Promise<Loaded> {
  const hooks: HooksDefinition = hooksFile === null ? {} : asHooks(await importDefault(hooksFile), hooksFile);
  const modules: ModuleRt[] = [];
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!;
    let def: ModuleDefinition;
    try {
      def = asModule(await importDefault(file), file);
    } catch (err) {
      if (err instanceof ModuleLoadError) throw err;
      throw new ModuleLoadError(`${file}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    modules.push(buildModule(i, file, def, hooks, defaultCodec));
  }
  return { modules, hooks };
}

export function describeModule(m: ModuleRt): ModuleDescriptor {
  const options: Record<string, number | boolean> = {};
  for (const [k, v] of Object.entries(m.def.options ?? {})) {
    if (typeof v === 'number' || typeof v === 'boolean') options[k] = v;
  }
  const r = m.def.resume;
  const resume = r === undefined ? null : {
    graceMs: r.graceMs, maxMessages: r.maxMessages ?? 1000, maxBytes: r.maxBytes ?? 1024 * 1024,
  };
  return { path: m.path, codec: m.codec.name, events: [...m.routes.keys()], options, resume, upgradeHooks: m.upgrade.length };
}
