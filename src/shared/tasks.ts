/**
 * The piscina tasks that cross from the I/O thread to the workers (piscina's `types.ts`
 * habit). Traffic never goes through these: each worker runs one long `serve` task whose
 * rings carry every event and command; `describe` runs once at start-up.
 */

export interface DescribeTask {
  readonly type: 'describe';
  /** Absolute file URLs of the module files, in mount order (module id = index). */
  readonly modules: readonly string[];
  readonly hooks: string | null;
  readonly codec: 'binary' | 'json' | 'raw';
}

export interface ModuleDescriptor {
  readonly path: string;
  readonly codec: 'binary' | 'json' | 'raw';
  readonly events: readonly string[];
  readonly options: Readonly<Record<string, number | boolean>>;
  /** Resumable sessions (defineModule({ resume })), with defaults filled in; null when off. */
  readonly resume: { readonly graceMs: number; readonly maxMessages: number; readonly maxBytes: number } | null;
  /**
   * Upgrade hooks (global + module). With none, the I/O thread completes the upgrade at once,
   * inside uWS's upgrade callback, and the worker sends no Accept: both sides read this same count.
   */
  readonly upgradeHooks: number;
}

export type DescribeResult =
  | { readonly ok: true; readonly modules: readonly ModuleDescriptor[] }
  | { readonly ok: false; readonly code: string; readonly message: string };

export interface ServeTask {
  readonly type: 'serve';
  readonly slot: number;
  /** Incarnation of this slot (bumped when a dead worker is replaced). */
  readonly generation: number;
  readonly inbound: SharedArrayBuffer;
  readonly outbound: SharedArrayBuffer;
  readonly modules: readonly string[];
  readonly hooks: string | null;
  /** Server default codec for modules that do not name one. */
  readonly codec: 'binary' | 'json' | 'raw';
  readonly drainBatch: number;
  /** Idle policy: busy-poll this long before sleeping (0 = never spin). */
  readonly idleSpinMicros: number;
  /** Idle policy: then block in Atomics.wait up to this long while no async hook is pending (0 = skip). */
  readonly idleBlockMs: number;
  /** options.asyncTimeoutMs: an async hook/handler still pending after this long is abandoned (0 = never). */
  readonly asyncTimeoutMs: number;
  /** Per-worker counters the I/O thread reads for stats (Float64Array over this SAB). */
  readonly counters: SharedArrayBuffer;
}

export type WorkerTask = DescribeTask | ServeTask;

/** Index of each per-worker counter in `ServeTask.counters` (Float64 slots). */
export const WorkerCounter = {
  messages: 0,
  handlerErrors: 1,
  badFrames: 2,
  unknownEvents: 3,
  outboundFullWaits: 4,
  droppedOnShutdown: 5,
  hookErrors: 6,
  /** 1 while the worker is handling a batch of records, 0 when it is idle (waiting for records). */
  busy: 7,
  /** worker_threads threadId of the worker serving this slot (so a hung one can be terminated). */
  threadId: 8,
  /** Async hooks/handlers abandoned after options.asyncTimeoutMs. */
  asyncTimeouts: 9,
  /**
   * Records started so far. The watchdog reads it with `busy`: a busy worker whose count has not
   * moved for handlerTimeoutMs is stuck in one record. An increment, not a clock read, per record.
   */
  records: 10,
  /** Async hook/handler chains pending in the worker (the watchdog probes such a worker while it is idle). */
  asyncPending: 11,
  /**
   * Messages not handled because their connection was already closing (closed by a handler, by a
   * failed or timed-out hook, or for a full handler backlog): counted, never run.
   */
  discarded: 12,
  /**
   * Promise rejections nobody handled (an un-awaited ctx.join() whose connection closed, say):
   * reported to onError with stage 'unhandled' instead of ending the worker.
   */
  unhandledRejections: 13,
  /**
   * Replies refused because their message was answered already (a second reply(), a reply() after
   * deferReply(), a deferReply() function called again): one answer per message.
   */
  duplicateReplies: 14,
  /**
   * Replies refused because no chain of their message was running: a ctx.reply() (or deferReply())
   * in onConnect/onResume/onAway/onDrain, or from a timer or callback whose message's chain had
   * ended (another message's chain may be running: it is not that message's answer).
   */
  strayReplies: 15,
  count: 16,
} as const;
