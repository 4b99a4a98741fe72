// The server class of the Ts.ED-style example: settings in @Configuration, lifecycle in `$`-hooks.
// Each hook records its phase in `phases` (main.ts prints them; the embedding test checks them).
import type { ModuleDescriptor } from '../../src/index.js';
import {
  Configuration, type AfterRoutesInit, type OnDestroy, type OnInit, type OnMountingMiddlewares, type OnReady,
  type OnServerInitError,
} from './platform.js';

export const STATUS_MODULE = new URL('./status.module.js', import.meta.url);

@Configuration({ port: 9004, modules: [STATUS_MODULE], workers: 1 })
export class Server implements OnInit, OnMountingMiddlewares, AfterRoutesInit, OnReady, OnServerInitError, OnDestroy {
  readonly phases: string[] = [];

  async $onInit(): Promise<void> {
    // e.g. connect to a database before any module is loaded
    this.phases.push('$onInit');
  }

  $onMountingMiddlewares(modules: readonly ModuleDescriptor[]): void {
    this.phases.push(`$onMountingMiddlewares ${modules.map((m) => m.path).join(',')}`);
  }

  $afterRoutesInit(): void {
    this.phases.push('$afterRoutesInit');
  }

  $onReady({ port }: { port: number; host: string }): void {
    this.phases.push(`$onReady ${port > 0 ? 'port' : 'no port'}`);
  }

  $onServerInitError(err: Error): void {
    this.phases.push(`$onServerInitError ${(err as { code?: string }).code ?? err.name}`);
  }

  $onDestroy(): void {
    this.phases.push('$onDestroy');
  }
}
