/**
 * One worker slot as the I/O thread sees it: its two rings, its bounded overflow, and the
 * inbound writing policy.
 *
 * Inbound policy when the worker falls behind (nothing is lost silently):
 *   1. records go into the SharedArrayBuffer ring;
 *   2. when it is full, they go into this slot's overflow (a local ring of `overflowBytes`),
 *      and keep going there, in order, until the overflow has been moved back into the ring;
 *   3. one connection may hold at most a quarter of the overflow (`overflowShare`): past
 *      that, or when the overflow is full, the message is refused and the caller closes
 *      that connection with 1013 (try again later), counted. The flooding connection is
 *      refused first; the others of the same worker keep their share.
 * Records that must never be dropped (Close, Barrier, Notice, Drain) go to a pending list bounded by
 * the number of connections (a connection has at most one Close and one Drain there). Each pending record remembers how many records had entered the
 * overflow before it and is flushed right after those, so the worker sees every record in the
 * order it was written (a Resume notice before the resumed socket's first message, say).
 */
import { Ring, RingStatus, type RingStatusCode } from '../shared/ring.js';
import { NoticeOp, RecordReader, writeClose, writeDrain, writeMessage, writeNotice, writeOpen, writeShed, writeUpgrade } from '../shared/records.js';
import { ControlKind } from '../shared/constants.js';
import { ErrorCodes } from '../shared/errors.js';
import { WorkerCounter } from '../shared/tasks.js';

/** Upper bound of a Notice record's bytes besides its data (FlatBuffers table, vtable, header). */
const NOTICE_OVERHEAD = 128;
const utf8 = new TextEncoder();

/** `after`: the overflow's input count when it was queued (it goes right after those records). */
interface PendingClose { kind: 0; after: number; handle: number; code: number; reason: Uint8Array }
interface PendingBarrier { kind: 1; after: number; seq: number }
interface PendingNotice { kind: 2; after: number; op: number; id: number; status: number; handle: number; data: Uint8Array }
interface PendingDrain { kind: 3; after: number; handle: number; buffered: number }
type Pending = PendingClose | PendingBarrier | PendingNotice | PendingDrain;

export interface UpgradeFields {
  handle: number; module: number; url: string; query: string; remoteAddress: string;
  headerNames: string[]; headerValues: string[]; params: string[];
}

export class Slot {
  readonly index: number;
  readonly inbound: Ring;
  readonly outbound: Ring;
  readonly overflow: Ring;
  readonly counterSab: SharedArrayBuffer;
  readonly counters: Float64Array;
  readonly reader: RecordReader;
  alive = false;
  generation = 0;
  restarts = 0;
  /** Date.now() of this slot's recent worker deaths (the crash-loop back-off looks at them). */
  deaths: number[] = [];
  /** A restart waiting out its back-off. */
  restartTimer: NodeJS.Timeout | null = null;
  /** ms the pending restart waits (0 = none pending). */
  backoffMs = 0;
  connections = 0;
  /** Records are going to the overflow (the ring filled up and the overflow is not yet moved back). */
  backlog = false;
  pending: Pending[] = [];
  /** Records (messages, opens, drains) written into the overflow: stats().workers[i].overflowed. */
  overflowed = 0;
  /** Records written into / moved out of the overflow during this backlog (orders the pending list). */
  private ovIn = 0;
  private ovOut = 0;
  /** Most overflow bytes one connection may hold: the one flooding is refused first. */
  readonly overflowShare: number;
  /**
   * Overflow bytes each connection holds now (its messages not yet moved to the ring), by handle,
   * and the charge of each message record in the overflow, by its overflow sequence number. What a
   * connection holds goes down as its records move on: a share counted over the whole backlog
   * (reset only once the overflow emptied) closed a client with a few messages in flight with 1013
   * after enough of them, when many clients kept the backlog from ever clearing.
   */
  private readonly held = new Map<number, number>();
  private readonly charges = new Map<number, { handle: number; bytes: number }>();
  private flushArmed = false;
  readonly flushBound: () => void;
  barrierSeq = 0;
  /** Records were written since the last doorbell (see Server.markDirty). */
  dirty = false;
  /** Watchdog: the worker's record count when first seen unchanged, and when (performance.now()). */
  stuckSeq = -1;
  stuckSince = 0;
  /** Token of the current outbound arming (see Server.armOutbound). */
  outboundArm = 0;
  readonly barrierWaiters = new Map<number, () => void>();
  /** Drains waiting in the pending list, by handle: a later drain of the same socket updates it. */
  private readonly pendingDrains = new Map<number, PendingDrain>();

  constructor(index: number, ringBytes: number, overflowBytes: number) {
    this.index = index;
    this.inbound = Ring.create(ringBytes);
    this.outbound = Ring.create(ringBytes);
    this.overflow = Ring.create(overflowBytes);
    this.overflowShare = Math.max(overflowBytes >>> 2, 1024);
    this.counterSab = new SharedArrayBuffer(WorkerCounter.count * 8);
    this.counters = new Float64Array(this.counterSab);
    this.reader = new RecordReader(this.outbound.data);
    this.flushBound = () => { this.flushArmed = false; this.flush(); };
  }

  private target(): Ring {
    return this.backlog ? this.overflow : this.inbound;
  }

  /** After a FULL from the ring: switch to the overflow and retry there once. */
  private spill(st: RingStatusCode): Ring | null {
    if (st !== RingStatus.FULL || this.backlog) return null;
    this.backlog = true;
    this.armFlush();
    return this.overflow;
  }

  /**
   * Returns 0 when the message went into the ring, otherwise the overflow bytes the connection
   * holds now, this message included (the caller refuses past overflowShare), or -1 when neither
   * had room.
   * `shed`: the message is over its rate limit and goes as a Shed record (see RecordKind.Shed).
   */
  message(handle: number, binary: boolean, src: Uint8Array, shed = false): number {
    const wasBacklog = this.backlog;
    const write = shed ? writeShed : writeMessage;
    let st = write(this.target(), handle, binary, src);
    // No doorbell here: the server rings each dirty slot once per event-loop turn.
    if (st === RingStatus.OK && !wasBacklog) return 0;
    const o = this.spill(st);
    if (o !== null) st = write(o, handle, binary, src);
    if (st !== RingStatus.OK) return -1;
    this.overflowed++;
    const bytes = src.length + 64;
    this.charges.set(this.ovIn++, { handle, bytes });
    const held = (this.held.get(handle) ?? 0) + bytes;
    this.held.set(handle, held);
    return held;
  }

  open(handle: number): boolean {
    const t = this.target();
    let st = writeOpen(t, handle);
    const o = this.spill(st);
    if (o !== null) st = writeOpen(o, handle);
    this.inbound.notify();
    return this.wrote(st, o !== null || t === this.overflow);
  }

  /**
   * Never dropped: a handler paused until onDrain would otherwise wait for ever. When neither the
   * ring nor the overflow has room it goes to the pending list, one per socket (a later drain of
   * the same socket only updates the buffered amount of the one already waiting).
   */
  drain(handle: number, buffered: number): void {
    const waiting = this.pendingDrains.get(handle);
    if (waiting !== undefined) {
      waiting.buffered = buffered;
      return;
    }
    const t = this.target();
    let st = writeDrain(t, handle, buffered);
    const o = this.spill(st);
    if (o !== null) st = writeDrain(o, handle, buffered);
    this.inbound.notify();
    if (this.wrote(st, o !== null || t === this.overflow)) return;
    const r: PendingDrain = { kind: 3, after: this.ovIn, handle, buffered };
    this.pendingDrains.set(handle, r);
    this.pending.push(r);
  }

  private wrote(st: RingStatusCode, toOverflow: boolean): boolean {
    if (st !== RingStatus.OK) return false;
    if (toOverflow) {
      this.ovIn++;
      this.overflowed++; // an Open or Drain counts as a record through the overflow, as a message does
    }
    return true;
  }

  /** Upgrades are refused (503) rather than queued when the worker is behind. */
  upgrade(u: UpgradeFields): boolean {
    if (this.backlog) return false;
    const st = writeUpgrade(this.inbound, u);
    this.inbound.notify();
    return st === RingStatus.OK;
  }

  /** Never dropped: goes to the pending list when there is no room. */
  close(handle: number, code: number, reason: Uint8Array): void {
    if (!this.backlog && this.pending.length === 0) {
      if (writeClose(this.inbound, handle, code, reason) === RingStatus.OK) {
        this.inbound.notify();
        return;
      }
      this.backlog = true;
      this.armFlush();
    }
    this.pending.push({ kind: 0, after: this.ovIn, handle, code, reason: reason.slice() });
  }

  /** Most data bytes a notice (a request's reply) can carry: what a paged reply is cut to. */
  get replyBytes(): number {
    return this.inbound.maxRecord - NOTICE_OVERHEAD;
  }

  /** Called for a notice that can never fit the ring (the server counts drops.noticeTooLarge). */
  onTooLarge: () => void = () => undefined;

  /**
   * Session events and request replies; never dropped (a worker may be awaiting the reply), with
   * one exception: a record larger than the ring can ever hold (a room listing thousands of
   * members, say). A reply then becomes an RW_ERR_RECORD_TOO_LARGE failure, so the worker's
   * request rejects instead of waiting for ever and the ring does not jam behind it; counted.
   * `remedy` ends that error's message (what the caller can do instead; default: raise ringBytes).
   */
  notice(op: number, id: number, status: number, handle: number, data: Uint8Array, remedy = 'raise ringBytes'): void {
    if (data.length > this.replyBytes) {
      this.onTooLarge();
      if (op !== NoticeOp.Reply || id === 0) return;
      status = 1;
      data = utf8.encode(JSON.stringify({
        code: ErrorCodes.RW_ERR_RECORD_TOO_LARGE,
        message: `reply of ${data.length} bytes does not fit the worker's ring (${remedy})`,
      }));
    }
    if (!this.backlog && this.pending.length === 0) {
      if (writeNotice(this.inbound, op, id, status, handle, data) === RingStatus.OK) {
        this.inbound.notify();
        return;
      }
      this.backlog = true;
      this.armFlush();
    }
    this.pending.push({ kind: 2, after: this.ovIn, op, id, status, handle, data: data.slice() });
  }

  barrier(seq: number): void {
    if (!this.backlog && this.pending.length === 0 && writeBarrier(this.inbound, seq)) {
      this.inbound.notify();
      return;
    }
    if (!this.backlog) {
      this.backlog = true;
      this.armFlush();
    }
    this.pending.push({ kind: 1, after: this.ovIn, seq });
  }

  /** Watchdog liveness probe (ControlKind.Probe). Skipped when the ring is backed up: it has records already. */
  probe(): void {
    if (this.backlog || this.pending.length !== 0) return;
    const off = this.inbound.reserve(4);
    if (off < 0) return;
    new DataView(this.inbound.data.buffer, this.inbound.data.byteOffset + off, 4).setUint32(0, ControlKind.Probe, true);
    this.inbound.commit();
    this.inbound.notify();
  }

  private armFlush(): void {
    if (this.flushArmed) return;
    this.flushArmed = true;
    const p = this.inbound.waitForSpaceAsync(this.nextNeeded());
    if (p === null) setImmediate(this.flushBound);
    else p.then(this.flushBound, this.flushBound);
  }

  /** Bytes the next record to move needs (a pending one when its turn has come). */
  private nextNeeded(): number {
    const r = this.pending[0];
    if (r !== undefined && r.after <= this.ovOut) {
      return r.kind === 0 ? r.reason.length + NOTICE_OVERHEAD : r.kind === 2 ? r.data.length + NOTICE_OVERHEAD : r.kind === 3 ? 64 : 16;
    }
    const off = this.overflow.peek();
    if (off >= 0) return this.overflow.peekLength + 16;
    return 256;
  }

  /**
   * Move the overflow and the pending list back into the ring in the order they were written:
   * a pending record goes once the overflow records queued before it have been moved.
   */
  flush(): void {
    if (!this.alive) return;
    const ov = this.overflow;
    const ring = this.inbound;
    const p = this.pending;
    let i = 0;
    let off: number;
    let moved = false;
    let fromOverflow = false;
    for (;;) {
      if (i < p.length && p[i]!.after <= this.ovOut) {
        const r = p[i]!;
        const ok = r.kind === 0 ? writeClose(ring, r.handle, r.code, r.reason) === RingStatus.OK
          : r.kind === 1 ? writeBarrier(ring, r.seq)
            : r.kind === 2 ? writeNotice(ring, r.op, r.id, r.status, r.handle, r.data) === RingStatus.OK
              : writeDrain(ring, r.handle, r.buffered) === RingStatus.OK;
        if (!ok) break;
        if (r.kind === 3) this.pendingDrains.delete(r.handle);
        i++;
      } else if ((off = ov.peek()) >= 0) {
        if (ring.push(ov.data, off, ov.peekLength) !== RingStatus.OK) break;
        ov.skip();
        const c = this.charges.get(this.ovOut);
        if (c !== undefined) {
          this.charges.delete(this.ovOut);
          const left = this.held.get(c.handle)! - c.bytes;
          if (left > 0) this.held.set(c.handle, left);
          else this.held.delete(c.handle);
        }
        this.ovOut++;
        fromOverflow = true;
      } else {
        break;
      }
      moved = true;
    }
    if (fromOverflow) ov.release();
    if (i > 0) this.pending = p.slice(i);
    if (moved) ring.notify();
    if (ov.peek() < 0 && this.pending.length === 0) {
      this.backlog = false;
      this.ovIn = this.ovOut = 0;
    } else {
      this.armFlush();
    }
  }

  /** Forget everything in flight (the worker died; its connections are being closed). */
  reset(): void {
    this.inbound.reset();
    this.outbound.reset();
    this.overflow.reset();
    this.pending = [];
    this.pendingDrains.clear();
    this.ovIn = this.ovOut = 0;
    this.backlog = false;
    this.flushArmed = false;
    this.held.clear();
    this.charges.clear();
    this.connections = 0;
  }

  usedBytes(): { inbound: number; outbound: number; overflow: number } {
    return { inbound: this.inbound.usedBytes, outbound: this.outbound.usedBytes, overflow: this.overflow.usedBytes };
  }
}

function writeBarrier(ring: Ring, seq: number): boolean {
  const off = ring.reserve(8);
  if (off < 0) return false;
  const d = ring.data;
  const v = new DataView(d.buffer, d.byteOffset + off, 8);
  v.setUint32(0, ControlKind.Barrier, true);
  v.setUint32(4, seq, true);
  ring.commit();
  return true;
}
