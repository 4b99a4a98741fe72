/** WebSocket close codes ringwire uses (RFC 6455 §7.4.1). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001, // graceful server shutdown
  ABNORMAL: 1006, // no close frame (socket dropped); never sent on the wire
  INVALID_PAYLOAD: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011, // hook failure on a live connection, or its worker died
  TRY_AGAIN: 1013, // the connection's worker cannot keep up (inbound ring + overflow full)
} as const;

/** Largest close reason in a close frame (125 bytes of payload less the code). */
export const MAX_CLOSE_REASON = 123;
const utf8e = new TextEncoder();
const utf8d = new TextDecoder();

/**
 * A close reason cut to MAX_CLOSE_REASON UTF-8 bytes on a character boundary. uWS cuts it at 123
 * bytes, inside a character if it comes to that, and the client then fails the close frame (1006
 * instead of the code). The worker cuts it too, before writing its CloseConn record: a reason
 * longer than a ring record would otherwise make ctx.close() throw.
 */
export function cutCloseReason(reason: string): string {
  if (reason.length <= MAX_CLOSE_REASON / 3) return reason; // at most 3 UTF-8 bytes per UTF-16 unit
  const b = utf8e.encode(reason);
  if (b.length <= MAX_CLOSE_REASON) return reason;
  let end = MAX_CLOSE_REASON;
  while ((b[end]! & 0xc0) === 0x80) end--; // b[end] starts the first character left out
  return utf8d.decode(b.subarray(0, end));
}

/**
 * Control records: tiny fixed-layout records ([u32 kind][u32 seq]) that the core uses to
 * sequence shutdown. They share the ring with the FlatBuffers records (kinds 1..31) and use
 * kinds >= 32 so a reader can tell them apart before verifying a FlatBuffer.
 */
export const ControlKind = {
  /** I/O → worker: answer with BarrierAck once every record before it has been fully handled. */
  Barrier: 32,
  /** worker → I/O: every record before the Barrier with this seq is handled and its commands written. */
  BarrierAck: 33,
  /**
   * I/O → worker: a no-op the worker only counts (WorkerCounter.records). The watchdog sends one
   * to a worker that is idle with async work pending: a worker whose event loop hangs in an async
   * continuation leaves it in the ring, and is then treated as stuck.
   */
  Probe: 34,
} as const;

export const Defaults = {
  ringBytes: 1 << 20, // 1 MiB per direction per worker
  overflowBytes: 1 << 24, // 16 MiB bounded overflow per worker (I/O thread local)
  maxConnections: 1_048_576,
  drainBatch: 4096,
  maxPayloadLength: 64 * 1024,
  idleTimeout: 120,
  maxBackpressure: 1024 * 1024,
} as const;

/** Internal topic prefix used for `ctx.broadcast` (one topic per module). Clients cannot subscribe to it. */
export const BROADCAST_TOPIC_PREFIX = '\u0000rw:mod:';
