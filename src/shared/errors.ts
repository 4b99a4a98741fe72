/**
 * One errors module for both threads (undici style): a base class with a stable
 * `code`, one subclass per failure. Invalid options throw plain TypeError/RangeError
 * naming the option (see `invalidOption`). Expected hot-path outcomes (ring full,
 * stale handle, fd exhaustion) are return values, not exceptions.
 *
 * Every code here must appear in the README's error-code table (a test checks).
 */

export const ErrorCodes = {
  RW_ERR_UWS_FALLBACK: 'RW_ERR_UWS_FALLBACK',
  RW_ERR_BAD_FRAME: 'RW_ERR_BAD_FRAME',
  RW_ERR_BAD_RECORD: 'RW_ERR_BAD_RECORD',
  RW_ERR_UNKNOWN_EVENT: 'RW_ERR_UNKNOWN_EVENT',
  RW_ERR_HANDLER: 'RW_ERR_HANDLER',
  RW_ERR_MODULE_LOAD: 'RW_ERR_MODULE_LOAD',
  RW_ERR_LISTEN: 'RW_ERR_LISTEN',
  RW_ERR_SERVER_STATE: 'RW_ERR_SERVER_STATE',
  RW_ERR_WORKER_DIED: 'RW_ERR_WORKER_DIED',
  RW_ERR_RECORD_TOO_LARGE: 'RW_ERR_RECORD_TOO_LARGE',
  RW_ERR_UPGRADE_REFUSED: 'RW_ERR_UPGRADE_REFUSED',
  RW_ERR_UPGRADE_REJECTED: 'RW_ERR_UPGRADE_REJECTED',
  RW_ERR_UPGRADE_TIMEOUT: 'RW_ERR_UPGRADE_TIMEOUT',
  RW_ERR_CONN_LIMIT: 'RW_ERR_CONN_LIMIT',
  RW_ERR_HEADERS_TOO_LARGE: 'RW_ERR_HEADERS_TOO_LARGE',
  RW_ERR_WORKER_UNAVAILABLE: 'RW_ERR_WORKER_UNAVAILABLE',
  RW_ERR_NO_MODULE: 'RW_ERR_NO_MODULE',
  RW_ERR_NOT_CONNECTED: 'RW_ERR_NOT_CONNECTED',
  RW_ERR_UID_TAKEN: 'RW_ERR_UID_TAKEN',
  RW_ERR_JOIN_REFUSED: 'RW_ERR_JOIN_REFUSED',
  RW_ERR_ALREADY_REPLIED: 'RW_ERR_ALREADY_REPLIED',
  RW_ERR_NO_MESSAGE: 'RW_ERR_NO_MESSAGE',
  RW_ERR_RESUME_TOKEN: 'RW_ERR_RESUME_TOKEN',
  RW_ERR_TCP_HANDSHAKE: 'RW_ERR_TCP_HANDSHAKE',
  RW_ERR_TCP_HEARTBEAT: 'RW_ERR_TCP_HEARTBEAT',
  RW_ERR_TCP_BAD_FRAME: 'RW_ERR_TCP_BAD_FRAME',
  RW_ERR_TCP_FRAME_TOO_LARGE: 'RW_ERR_TCP_FRAME_TOO_LARGE',
  RW_ERR_CLUSTER: 'RW_ERR_CLUSTER',
  RW_ERR_HANDLER_TIMEOUT: 'RW_ERR_HANDLER_TIMEOUT',
  RW_ERR_RATE_LIMITED: 'RW_ERR_RATE_LIMITED',
  RW_ERR_CLIENT_CLOSED: 'RW_ERR_CLIENT_CLOSED',
  RW_ERR_CONNECTOR_CLOSE: 'RW_ERR_CONNECTOR_CLOSE',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class RingwireError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RingwireError';
    this.code = code;
  }
}

/** uWebSockets.js loaded its slow `ws` fallback instead of the native binary. */
export class UwsFallbackError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_UWS_FALLBACK, message);
    this.name = 'UwsFallbackError';
  }
}

/** Bytes from a client (wire frame) could not be decoded. */
export class BadFrameError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_BAD_FRAME, message);
    this.name = 'BadFrameError';
  }
}

/** A ring record (between threads) is malformed: a bug or memory corruption, never client input. */
export class BadRecordError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_BAD_RECORD, message);
    this.name = 'BadRecordError';
  }
}

/** A message named an event the module does not route. */
export class UnknownEventError extends RingwireError {
  constructor(event: string) {
    super(ErrorCodes.RW_ERR_UNKNOWN_EVENT, `unknown event ${JSON.stringify(event)}`);
    this.name = 'UnknownEventError';
  }
}

/** A user hook or handler threw or rejected; `cause` holds the original error. */
export class HandlerError extends RingwireError {
  readonly stage: string;
  constructor(stage: string, cause: unknown) {
    super(ErrorCodes.RW_ERR_HANDLER, `${stage} failed: ${describe(cause)}`, { cause });
    this.name = 'HandlerError';
    this.stage = stage;
  }
}

/** An async hook or handler did not settle within options.asyncTimeoutMs. */
export class HandlerTimeoutError extends RingwireError {
  readonly stage: string;
  constructor(stage: string, ms: number) {
    super(ErrorCodes.RW_ERR_HANDLER_TIMEOUT, `${stage} did not settle within ${ms} ms`);
    this.name = 'HandlerTimeoutError';
    this.stage = stage;
  }
}

/** A message over its connection's rate limit was shed (rateLimit.onExceed 'shed'). */
export class RateLimitedError extends RingwireError {
  constructor() {
    super(ErrorCodes.RW_ERR_RATE_LIMITED, 'rate limit exceeded: message not handled');
    this.name = 'RateLimitedError';
  }
}

/** A module or hooks file could not be loaded or is not a valid definition. */
export class ModuleLoadError extends RingwireError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.RW_ERR_MODULE_LOAD, message, { cause });
    this.name = 'ModuleLoadError';
  }
}

/** The server could not listen (port taken, bad host). */
export class ListenError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_LISTEN, message);
    this.name = 'ListenError';
  }
}

/** An API call that the server's current state does not allow (listen twice, listen after close). */
export class ServerStateError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_SERVER_STATE, message);
    this.name = 'ServerStateError';
  }
}

/** A worker thread died; its connections were closed with 1011. */
export class WorkerDiedError extends RingwireError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.RW_ERR_WORKER_DIED, message, { cause });
    this.name = 'WorkerDiedError';
  }
}

/** A single record is larger than a ring can ever hold. */
export class RecordTooLargeError extends RingwireError {
  constructor(message: string) {
    super(ErrorCodes.RW_ERR_RECORD_TOO_LARGE, message);
    this.name = 'RecordTooLargeError';
  }
}

/**
 * `next()` of a connector test client (TcpClient, MemoryClient) whose connection is closed and
 * has no message left. `closeCode`/`reason` are the close's when the client knows them (a
 * memory close; a TCP kick frame), else 1006 and ''.
 */
export class ClientClosedError extends RingwireError {
  readonly closeCode: number;
  readonly reason: string;
  constructor(message: string, closeCode = 1006, reason = '') {
    super(ErrorCodes.RW_ERR_CLIENT_CLOSED, message);
    this.name = 'ClientClosedError';
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** `options.x must be ...` errors: TypeError for wrong type, RangeError for out of range. */
export function invalidOption(name: string, must: string, kind: 'type' | 'range' = 'type'): Error {
  const msg = `options.${name} must be ${must}`;
  return kind === 'range' ? new RangeError(msg) : new TypeError(msg);
}

/** Levenshtein distance (short option and field names only). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The known name closest to a misspelt one (at most 2 edits, case ignored; the first of equals),
 * for "did you mean" hints. The closest, not the first within 2: `onDiconnect` is one edit from
 * onDisconnect and two from onConnect, which comes first in the list.
 */
export function nearestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const n of known) {
    const d = editDistance(n.toLowerCase(), lower);
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Throws a TypeError naming the first key of `o` that is not in `known` (with the closest known
 * name): a misspelt option (`worker: 2`) is an error, not silently ignored. `prefix` names the
 * nested object (`rateLimit.`).
 */
export function onlyKnownOptions(o: object, known: readonly string[], prefix = ''): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue;
    const near = nearestName(k, known);
    throw new TypeError(`options.${prefix}${k} is not an option${near !== undefined ? ` (did you mean ${prefix}${near}?)` : ''}`);
  }
}

/** Validate an integer option in [min, max]; returns the value or the default. */
export function intOption(value: unknown, name: string, def: number, min: number, max: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw invalidOption(name, `an integer between ${min} and ${max}`, 'type');
  }
  if (value < min || value > max) {
    throw invalidOption(name, `an integer between ${min} and ${max}, got ${value}`, 'range');
  }
  return value;
}
