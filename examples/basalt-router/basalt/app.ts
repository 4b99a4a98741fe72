// I/O-thread side of the Basalt-style router: createBasaltApp() is a thin layer over
// ringwire's createServer(). Events are *files* (name → compiled module file) because
// ringwire loads them inside its worker threads; this thread never imports them.
import { createServer, type Server, type ServerOptions } from '../../../src/index.js';

export interface BasaltAppOptions extends Omit<ServerOptions, 'modules' | 'hooks'> {
  /** Event name → file default-exporting basaltEvent(name, {...}); the event is served on `/${name}`. */
  events: Readonly<Record<string, string | URL>>;
  /** File default-exporting basaltGlobalHooks({...}) (the GLOBAL_ hooks). */
  hooks?: string | URL;
  /** Post every hook run on the 'basalt-router:trace' BroadcastChannel (see trace.ts). */
  trace?: boolean;
}

export interface BasaltApp {
  readonly server: Server;
  /** Resolves to the bound port. */
  listen(port: number, host?: string): Promise<number>;
  stop(): Promise<void>;
}

export function createBasaltApp(options: BasaltAppOptions): BasaltApp {
  const { events, hooks, trace, lifecycle, ...rest } = options;
  const names = Object.keys(events);
  // Worker threads copy process.env when they start: this is how the setting reaches them.
  if (trace === true) process.env['BASALT_TRACE'] = '1';
  const server = createServer({
    ...rest,
    modules: names.map((n) => events[n]!),
    ...(hooks !== undefined && { hooks }),
    lifecycle: {
      ...lifecycle,
      // The event files were loaded (in a worker) and described: check each one serves the
      // path its name promises before any route is mounted. Throwing here fails listen().
      onMountingModules: async (mods) => {
        mods.forEach((m, i) => {
          if (m.path !== `/${names[i]}`) {
            throw new TypeError(`event "${names[i]}" must be basaltEvent('${names[i]}', ...), its file serves ${m.path}`);
          }
        });
        await lifecycle?.onMountingModules?.(mods);
      },
    },
  });
  return {
    server,
    listen: (port, host) => server.listen(port, host),
    stop: () => server.close(),
  };
}
