/**
 * The worker's side of its outbound ring: every command a handler issues is written here,
 * straight into the ring. A full ring means the I/O thread is behind: the worker notifies it
 * and sleeps (Atomics.wait) until there is space. Blocking here is safe because the I/O thread
 * never waits on a worker, and it is the backpressure that keeps memory bounded. Only a closed
 * ring (shutdown) drops a command, and that is counted.
 */
import { Ring, RingStatus, type RingStatusCode } from '../shared/ring.js';
import {
  writeSend, writeSendFrame, writeSendMany, writePublish, writeSubscribe, writeUnsubscribe,
  writeCloseConn, writeAccept, writeReject, writeRequest, type RequestFields,
} from '../shared/records.js';
import { ControlKind } from '../shared/constants.js';
import { ErrorCodes, RecordTooLargeError, RingwireError, type ErrorCode } from '../shared/errors.js';
import { WorkerCounter } from '../shared/tasks.js';

export class Outbox {
  readonly ring: Ring;
  readonly counters: Float64Array;
  /**
   * True while the serve loop drains a batch: it rings the I/O thread once at the end.
   * Commands written at any other time (timers, resolved promises, I/O callbacks in a
   * module) ring it themselves, or the I/O thread would sleep on them.
   */
  batching = false;

  constructor(ring: Ring, counters: Float64Array) {
    this.ring = ring;
    this.counters = counters;
  }

  /** Called after a write returned FULL: wake the I/O thread and wait for room. False = give up (closed). */
  private waitRoom(bytes: number): boolean {
    const ring = this.ring;
    if (ring.closed) {
      this.counters[WorkerCounter.droppedOnShutdown]! += 1;
      return false;
    }
    this.counters[WorkerCounter.outboundFullWaits]! += 1;
    ring.notify();
    // Bounded waits in a loop so a closed ring (shutdown) is noticed even without a wake-up.
    while (!ring.waitForSpace(bytes, 100)) {
      if (ring.closed) {
        this.counters[WorkerCounter.droppedOnShutdown]! += 1;
        return false;
      }
    }
    return true;
  }

  private done(): void {
    if (!this.batching) this.ring.notify();
  }

  private check(st: RingStatusCode, bytes: number): boolean {
    if (st === RingStatus.OK) return true;
    if (st === RingStatus.TOO_LARGE) {
      throw new RecordTooLargeError(`a ${bytes}-byte command does not fit the outbound ring (maxRecord ${this.ring.maxRecord}); raise ringBytes`);
    }
    // The estimate plus slack may pass maxRecord for a record that fits (it was FULL, not
    // TOO_LARGE): waitForSpace refuses such a length at once, which would spin here for ever.
    return !this.waitRoom(Math.min(bytes + 64, this.ring.maxRecord));
  }

  send(handle: number, binary: boolean, data: Uint8Array): void {
    while (!this.check(writeSend(this.ring, handle, binary, data), data.length));
    this.done();
  }

  sendFrame(handle: number, event: string, ref: number, payload: Uint8Array): void {
    while (!this.check(writeSendFrame(this.ring, handle, event, 0, ref, payload), payload.length + event.length * 3));
    this.done();
  }

  sendMany(handles: ArrayLike<number>, count: number, binary: boolean, data: Uint8Array): void {
    while (!this.check(writeSendMany(this.ring, handles, count, binary, data), data.length + count * 8));
    this.done();
  }

  publish(topic: string, binary: boolean, data: Uint8Array, exclude: number): void {
    while (!this.check(writePublish(this.ring, topic, binary, data, 0, data.length, exclude), data.length + topic.length * 3));
    this.done();
  }

  subscribe(handle: number, topic: string): void {
    while (!this.check(writeSubscribe(this.ring, handle, topic), topic.length * 3));
    this.done();
  }

  unsubscribe(handle: number, topic: string): void {
    while (!this.check(writeUnsubscribe(this.ring, handle, topic), topic.length * 3));
    this.done();
  }

  closeConn(handle: number, code: number, reason: string): void {
    while (!this.check(writeCloseConn(this.ring, handle, code, reason), reason.length * 3));
    this.done();
  }

  accept(handle: number): void {
    while (!this.check(writeAccept(this.ring, handle), 0));
    this.done();
  }

  reject(handle: number, status: number, names: string[], values: string[], body: Uint8Array): void {
    while (!this.check(writeReject(this.ring, handle, status, names, values, body), body.length + 256));
    this.done();
  }

  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly fields: RequestFields = { op: 0, id: 0, handle: 0, text: '', handles: null, binary: false, data: null };

  /**
   * A session/room command. With `reply`, resolves with the I/O thread's answer (parsed JSON)
   * or rejects with a RingwireError carrying its code.
   */
  request(op: number, handle: number, text: string, handles: readonly number[] | null, binary: boolean,
    data: Uint8Array | null, reply: boolean): Promise<unknown> | undefined {
    const f = this.fields;
    f.op = op;
    f.id = reply ? this.nextId++ : 0;
    if (this.nextId > 0xfffffff0) this.nextId = 1;
    f.handle = handle;
    f.text = text;
    f.handles = handles;
    f.binary = binary;
    f.data = data;
    const size = (data?.length ?? 0) + (handles?.length ?? 0) * 8 + text.length * 3 + 64;
    const id = f.id;
    let p: Promise<unknown> | undefined;
    if (reply) p = new Promise((resolve, reject) => { this.waiting.set(id, { resolve, reject }); });
    try {
      while (!this.check(writeRequest(this.ring, f), size));
    } catch (err) {
      // Not written (too large, ring closed): nobody will ever answer it.
      if (reply) this.waiting.delete(id);
      throw err;
    } finally {
      f.data = null;
      f.handles = null;
    }
    this.done();
    return p;
  }

  /** A Reply notice arrived. */
  settle(id: number, status: number, data: Uint8Array | null): void {
    const w = this.waiting.get(id);
    if (w === undefined) return;
    this.waiting.delete(id);
    let v: unknown = null;
    try {
      v = data === null || data.length === 0 ? null : JSON.parse(utf8d.decode(data));
    } catch {
      v = null;
    }
    if (status === 0) w.resolve(v);
    else {
      const e = (v ?? {}) as { code?: string; message?: string };
      // A reply too large for the ring is the documented RecordTooLargeError, as a command too
      // large to write is (`err instanceof RecordTooLargeError` holds for both).
      w.reject(e.code === ErrorCodes.RW_ERR_RECORD_TOO_LARGE ? new RecordTooLargeError(e.message ?? 'reply too large')
        : new RingwireError((e.code ?? 'RW_ERR_HANDLER') as ErrorCode, e.message ?? 'request failed'));
    }
  }

  /** Control record: [u32 kind][u32 seq]. */
  barrierAck(seq: number): void {
    for (;;) {
      const off = this.ring.reserve(8);
      if (off >= 0) {
        const d = this.ring.data;
        writeU32(d, off, ControlKind.BarrierAck);
        writeU32(d, off + 4, seq);
        this.ring.commit();
        this.done();
        return;
      }
      if (!this.waitRoom(8)) return;
    }
  }
}

const utf8d = new TextDecoder();

export function writeU32(d: Uint8Array, off: number, v: number): void {
  d[off] = v & 0xff;
  d[off + 1] = (v >>> 8) & 0xff;
  d[off + 2] = (v >>> 16) & 0xff;
  d[off + 3] = (v >>> 24) & 0xff;
}

export function readU32(d: Uint8Array, off: number): number {
  return (d[off]! | (d[off + 1]! << 8) | (d[off + 2]! << 16) | (d[off + 3]! << 24)) >>> 0;
}
