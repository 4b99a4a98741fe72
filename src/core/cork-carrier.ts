/**
 * A private loopback HTTP request the I/O thread keeps pending only to have a response to
 * cork.
 *
 * Why: completing an upgrade asynchronously must happen inside a cork callback (uWS.js
 * v20.30.0 prints a warning for every `res.upgrade` outside `HttpResponse.cork`), but
 * `res.cork(() => res.upgrade(...))` on the upgrading response hits a uWS bug
 * (uNetworking/uWebSockets#1928, fixed upstream after v20.30.0): after the callback,
 * `HttpResponse::cork` reads the HTTP state from memory the upgrade has just reallocated in
 * place for the WebSocket, and now and then closes the fresh WebSocket (1006) although the
 * client already got its 101. Seen here on about one run in three of 20 concurrent upgrades.
 * Upgrading inside the cork of *another* response satisfies uWS.js's cork check, and that
 * response's post-callback code sees a different socket and returns early. A pending GET
 * response has no idle timeout in uWS (checked: still pending after 25 s), needs a per-server
 * random path, and the client side is unref'd so it never keeps the process alive.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';

export class CorkCarrier {
  readonly path: string;
  private res: HttpResponse | null = null;
  private client: Socket | null = null;
  private ready: (() => void) | null = null;

  constructor() {
    this.path = `/__ringwire_cork_${randomBytes(16).toString('hex')}`;
  }

  /** Mount the carrier route (before the catch-all route). */
  mount(app: TemplatedApp): void {
    app.get(this.path, (res) => {
      if (this.res !== null) {
        res.writeStatus('404 Not Found').end();
        return;
      }
      this.res = res;
      res.onAborted(() => {
        this.res = null;
      });
      this.ready?.();
      this.ready = null;
    });
  }

  /** Send the carrier request to our own listen socket; resolves once it is pending. */
  start(port: number, host: string): Promise<void> {
    const target = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
    return new Promise<void>((resolve, reject) => {
      this.ready = resolve;
      const sock = connect(port, target);
      this.client = sock;
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.unref();
        sock.write(`GET ${this.path} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      });
    });
  }

  /** Run `fn` inside the carrier's cork callback; false when there is no carrier. */
  cork(fn: () => void): boolean {
    const res = this.res;
    if (res === null) return false;
    res.cork(fn);
    return true;
  }

  stop(): void {
    this.client?.destroy();
    this.client = null;
  }
}
