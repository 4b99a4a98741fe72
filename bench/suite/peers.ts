/**
 * The servers compared in every scenario, and how the load generator talks to each of them:
 * which upgrade path, which handshake, and which bytes carry an application message of N
 * payload bytes on each route.
 *
 *   raw uWS, ws   echo/publish the frame they get: they receive ringwire's binary WireFrame
 *                 bytes, so all three put the same bytes on the wire
 *   ringwire      binary-codec WireFrame {event, ref 1, payload}; the module decodes, routes
 *                 by event, and replies with a frame of the same size
 *   socket.io     text `42["echo","xxx..."]` (namespace /fanout: `42/fanout,["pub","xxx..."]`)
 *                 after the engine.io/socket.io handshake (`0{...}` from the server, `40` from
 *                 the client, `40{...}` ack), spoken by the load generator itself (pre-built
 *                 frames over a raw websocket upgrade; no socket.io-client in the loop)
 */
import { fileURLToPath } from 'node:url';
import { encodeFrame } from '../../src/shared/wire.js';
import type { Handshake } from '../loadgen/index.js';
import { RINGWIRE_EVENT, Route, SOCKETIO_EVENT, SOCKETIO_NAMESPACE, type RouteName } from '../servers/routes.js';

export type PeerId = 'uws' | 'ws' | 'socketio' | 'ringwire';

export interface Message {
  /** Bytes of one client message (before WebSocket framing). */
  payload: Uint8Array;
  binary: boolean;
}

export interface Peer {
  readonly id: PeerId;
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  path(route: RouteName): string;
  handshake(route: RouteName): Handshake | undefined;
  message(route: RouteName, payloadBytes: number): Message;
}

const script = (name: string): string => fileURLToPath(new URL(`../servers/${name}.js`, import.meta.url));

/** Deterministic payload bytes (a..z repeated; valid UTF-8 and JSON-safe, so every codec can carry them). */
export function payloadBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = 97 + (i % 26);
  return b;
}

function ringwireFrame(route: RouteName, n: number): Message {
  return { payload: encodeFrame({ event: RINGWIRE_EVENT[route], ref: 1, payload: payloadBytes(n) }), binary: true };
}

export const UWS: Peer = {
  id: 'uws',
  name: 'uWS (raw)',
  script: script('uws-server'),
  args: [],
  path: (r) => Route[r],
  handshake: () => undefined,
  message: ringwireFrame,
};

export const WS: Peer = {
  id: 'ws',
  name: 'ws',
  script: script('ws-server'),
  args: [],
  path: (r) => Route[r],
  handshake: () => undefined,
  message: ringwireFrame,
};

const SIO_PATH = '/socket.io/?EIO=4&transport=websocket';

export const SOCKETIO: Peer = {
  id: 'socketio',
  name: 'socket.io',
  script: script('socketio-server'),
  args: [],
  path: () => SIO_PATH,
  handshake: (r) => {
    const nsp = SOCKETIO_NAMESPACE[r];
    return { sendText: [nsp === '/' ? '40' : `40${nsp},`], expectMessages: 2 };
  },
  message: (r, n) => {
    const nsp = SOCKETIO_NAMESPACE[r];
    const text = `42${nsp === '/' ? '' : `${nsp},`}${JSON.stringify([SOCKETIO_EVENT[r], new TextDecoder().decode(payloadBytes(n))])}`;
    return { payload: new TextEncoder().encode(text), binary: false };
  },
};

/** ringwire with server options as ringwire-server.js flags (`--workers 1 --ring 65536 ...`); none = defaults. */
export function ringwirePeer(args: readonly string[] = [], name = 'ringwire'): Peer {
  return {
    id: 'ringwire',
    name,
    script: script('ringwire-server'),
    args,
    path: (r) => Route[r],
    handshake: () => undefined,
    message: ringwireFrame,
  };
}

export const RINGWIRE = ringwirePeer();

/** Every peer, ceiling first. */
export const PEERS: readonly Peer[] = [UWS, WS, SOCKETIO, RINGWIRE];
