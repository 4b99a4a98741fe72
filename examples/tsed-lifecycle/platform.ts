// A Ts.ED-style platform on ringwire (I/O thread). Ts.ED configures a server class with
// @Configuration({...}) and calls its `$`-hooks as the server starts and stops; here
// PlatformRingwire.bootstrap(Server) maps those hooks onto ringwire's `lifecycle` option:
//
//   $onInit                 → onInit             (before anything is loaded)
//   $onMountingMiddlewares  → onMountingModules  (module files loaded and described; gets their descriptors)
//   $afterRoutesInit        → afterRoutesInit    (every module path mounted)
//   $onReady                → onReady            (workers started, port bound; gets { port, host })
//   $onServerInitError      → onServerInitError  (any start-up failure; listen() then rejects with it)
//   $onDestroy              → onShutdown         (graceful close: sockets closed, disconnect hooks done)
//
// Module files stay files: ringwire loads them in its worker threads, never here.
import { createServer, type ModuleDescriptor, type Server, type ServerOptions } from '../../src/index.js';

type MaybePromise<T> = T | Promise<T>;

export interface OnInit { $onInit(): MaybePromise<void> }
export interface OnMountingMiddlewares { $onMountingMiddlewares(modules: readonly ModuleDescriptor[]): MaybePromise<void> }
export interface AfterRoutesInit { $afterRoutesInit(): MaybePromise<void> }
export interface OnReady { $onReady(address: { port: number; host: string }): MaybePromise<void> }
export interface OnServerInitError { $onServerInitError(err: Error): MaybePromise<void> }
export interface OnDestroy { $onDestroy(): MaybePromise<void> }

/** @Configuration settings: ringwire's server options (minus lifecycle, which the class provides) plus the address. */
export interface Settings extends Omit<ServerOptions, 'lifecycle'> {
  port?: number;
  host?: string;
}

const settingsOf = new WeakMap<object, Settings>();

/** @Configuration({ port, modules, workers, ... }) on the server class. */
export function Configuration(settings: Settings) {
  return (cls: new () => object, _ctx: ClassDecoratorContext) => {
    settingsOf.set(cls, settings);
  };
}

type Hook = (...args: never[]) => unknown;

export class PlatformRingwire<T extends object> {
  readonly server: Server;

  private constructor(readonly instance: T, readonly settings: Settings) {
    const hook = <F extends Hook>(name: string): F | undefined => {
      const fn = (instance as Record<string, unknown>)[name];
      return typeof fn === 'function' ? (fn.bind(instance) as F) : undefined;
    };
    const { port: _port, host: _host, ...options } = settings;
    this.server = createServer({
      ...options,
      lifecycle: {
        onInit: hook('$onInit'),
        onMountingModules: hook('$onMountingMiddlewares'),
        afterRoutesInit: hook('$afterRoutesInit'),
        onReady: hook('$onReady'),
        onServerInitError: hook('$onServerInitError'),
        onShutdown: hook('$onDestroy'),
      },
    });
  }

  /** Builds the server class (settings: @Configuration, then `overrides`) and its ringwire server; does not listen yet. */
  static async bootstrap<T extends object>(ServerClass: new () => T, overrides: Partial<Settings> = {}): Promise<PlatformRingwire<T>> {
    const base = settingsOf.get(ServerClass);
    if (base === undefined) throw new TypeError(`${ServerClass.name} has no @Configuration({...})`);
    return new PlatformRingwire(new ServerClass(), { ...base, ...overrides } as Settings);
  }

  /** Runs the start-up hooks and listens; resolves to the bound port. */
  listen(): Promise<number> {
    return this.server.listen(this.settings.port ?? 8083, this.settings.host ?? '127.0.0.1');
  }

  /** Graceful stop ($onDestroy runs once every connection is closed). */
  stop(): Promise<void> {
    return this.server.close();
  }
}
