/**
 * SPSC byte ring on a SharedArrayBuffer: exactly one producer thread, exactly one
 * consumer thread, variable-length records, batch drain, futex doorbells.
 *
 * Shared leaf module: imported by the I/O thread and by workers; imports nothing
 * but the errors module.
 *
 * SharedArrayBuffer layout (header = 5 cache lines of Int32 fields, then data):
 *
 *   byte 0     64        128       192       256       320                 320 + capacity
 *        +---------+---------+---------+---------+---------+-----------------------+
 *        | TAIL    | HEAD    | C_SLEEP | P_SLEEP | MAGIC   | data area             |
 *        | (prod.  | (cons.  | (cons.  | (prod.  | CAPACITY| `capacity` bytes,     |
 *        |  writes)|  writes)|  sleeps)|  sleeps)| CLOSED  | power of two          |
 *        |         |         |         |         | FULLS   |                       |
 *        +---------+---------+---------+---------+---------+-----------------------+
 *   Int32 index:  0        16        32        48   64..67
 *
 *   Each hot field has its own 64-byte line so that the producer's writes of TAIL
 *   never invalidate the line holding HEAD (and vice versa): no false sharing.
 *   Line 4 holds cold fields (set once, or written only on close / when full).
 *
 *   TAIL, HEAD: free-running u32 byte counters (wrap at 2^32). Position in the data
 *   area = counter & (capacity - 1). used = (TAIL - HEAD) mod 2^32, 0..capacity.
 *   The producer owns TAIL, the consumer owns HEAD.
 *
 * Record layout (every record starts 8-aligned, so payloads are 8-aligned too and
 * a Float64Array / BigInt64Array view over a payload is legal):
 *
 *   +------------+------------+---------------------------+---------+
 *   | u32 length | u32 0      | payload (`length` bytes)  | pad → 8 |
 *   +------------+------------+---------------------------+---------+
 *   record bytes = 8 + roundUp8(length)        (host byte order, i.e. little-endian)
 *
 *   A record never straddles the end of the data area. When it does not fit in
 *   the bytes left before the end, the producer writes a wrap marker there and
 *   the record starts at position 0; the skipped bytes count as used until the
 *   consumer passes them:
 *
 *   +---------------- ... -----------+-------------------------+
 *   | record | record | ...          | 0xFFFFFFFF | (skipped)  |   ← end of data area
 *   +---------------- ... -----------+-------------------------+
 *
 *   Because a record of R <= capacity/2 bytes always fits into an empty ring
 *   (either before the end, or the end is at most capacity - R bytes away),
 *   maxRecord = capacity/2 - 8.
 *
 * Doorbells (no spinning anywhere; idle threads sit in Atomics.wait/waitAsync):
 *
 *   consumer: store C_SLEEP=1; re-check TAIL; Atomics.wait(C_SLEEP, 1)
 *   producer: store TAIL (commit) ... notify(): if C_SLEEP==1 and CAS(C_SLEEP,1→0): Atomics.notify
 *   and symmetrically P_SLEEP for a producer waiting for space, rung by release().
 *   The sleep flag is the futex word itself: a wake-up that lands between the
 *   consumer's re-check and its wait turns the flag to 0, so the wait returns
 *   'not-equal' at once instead of missing the wake-up.
 *
 * Memory ordering: every Atomics operation in JS is sequentially consistent, and a
 * plain (non-atomic) access that precedes an Atomics.store in program order
 * happens-before any plain access that follows an Atomics.load reading that value.
 * That gives the release/acquire pairs used below; each site says why.
 */

import { BadRecordError, invalidOption } from './errors.js';

export const RingStatus = { OK: 0, FULL: 1, TOO_LARGE: 2 } as const;
export type RingStatusCode = (typeof RingStatus)[keyof typeof RingStatus];

// ---- header fields (Int32 indices), one cache line (16 Int32s) per hot field ----
export const kTailField = 0;
export const kHeadField = 16;
export const kConsumerSleepField = 32;
export const kProducerSleepField = 48;
export const kMagicField = 64;
export const kCapacityField = 65;
export const kClosedField = 66;
export const kFullCountField = 67;
export const kHeaderBytes = 320;

/** Record header size in bytes: u32 length + u32 reserved (keeps payloads 8-aligned). */
export const kRecordHeaderBytes = 8;
/** Length value of a wrap marker (never a valid payload length). */
export const kWrapMarker = 0xffffffff;

export const kMinCapacity = 1024;
export const kMaxCapacity = 2 ** 30;

const MAGIC = 0x52575247; // 'RWRG'

/** Atomics.waitAsync (Node >= 16); tsconfig's lib (ES2022) does not declare it. */
type WaitAsync = (
  ta: Int32Array, index: number, value: number, timeout?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Bytes a record of `length` payload bytes occupies in the data area. */
export function recordBytes(length: number): number {
  return kRecordHeaderBytes + ((length + 7) & ~7);
}

export class Ring {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  /** The data area; every offset this API returns indexes into it. */
  readonly data: Uint8Array;
  /** Largest payload length a record may have. */
  readonly maxRecord: number;
  /** Payload length of the record returned by the last successful peek(). */
  peekLength = 0;

  private readonly header: Int32Array;
  /** The data area as u32 words, for record headers. */
  private readonly words: Uint32Array;
  private readonly mask: number;

  // Producer-local state (only the producer instance uses it).
  private tail: number; //            last published TAIL (we are its only writer)
  private headCache: number; //       last HEAD we read; stale values are conservative
  private resStart = -1; //           counter where the reserved record starts (after any wrap)
  private resLength = 0; //           reserved payload length

  // Consumer-local state.
  private readPos: number; //         counter of the next unread record (>= HEAD)
  private tailCache: number; //       last TAIL we read
  private peekNext = -1; //           counter just past the peeked record; -1: none peeked

  private constructor(sab: SharedArrayBuffer, capacity: number) {
    this.sab = sab;
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.maxRecord = capacity / 2 - kRecordHeaderBytes;
    this.header = new Int32Array(sab, 0, kHeaderBytes / 4);
    this.data = new Uint8Array(sab, kHeaderBytes, capacity);
    this.words = new Uint32Array(sab, kHeaderBytes, capacity / 4);
    // Attaching reads the counters once; the thread that hands the sab over via
    // postMessage has already synchronised with us, so plain loads would do, but
    // Atomics.load is the honest statement that another thread owns these words.
    this.tail = Atomics.load(this.header, kTailField) >>> 0;
    this.headCache = Atomics.load(this.header, kHeadField) >>> 0;
    this.readPos = this.headCache;
    this.tailCache = this.tail;
  }

  /** Allocate a new ring with a data area of `capacity` bytes (power of two, 1 KiB..1 GiB). */
  static create(capacity: number): Ring {
    if (
      typeof capacity !== 'number' || !Number.isInteger(capacity) ||
      capacity < kMinCapacity || capacity > kMaxCapacity || (capacity & (capacity - 1)) !== 0
    ) {
      throw invalidOption('capacity', 'a power of two between 1024 and 2^30', 'range');
    }
    const sab = new SharedArrayBuffer(kHeaderBytes + capacity);
    const h = new Int32Array(sab, 0, kHeaderBytes / 4);
    h[kMagicField] = MAGIC;
    h[kCapacityField] = capacity;
    return new Ring(sab, capacity);
  }

  /** Attach to a ring created in another thread (the sab arrives via postMessage/workerData). */
  static from(sab: SharedArrayBuffer): Ring {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < kHeaderBytes + kMinCapacity) {
      throw new BadRecordError('Ring.from: not a ring SharedArrayBuffer');
    }
    const h = new Int32Array(sab, 0, kHeaderBytes / 4);
    const capacity = Atomics.load(h, kCapacityField);
    if (Atomics.load(h, kMagicField) !== MAGIC || sab.byteLength !== kHeaderBytes + capacity) {
      throw new BadRecordError('Ring.from: SharedArrayBuffer has no valid ring header');
    }
    return new Ring(sab, capacity);
  }

  // ===================== producer side =====================

  /**
   * Reserve `length` contiguous payload bytes. Returns their offset in `data`,
   * -1 when the ring is full right now (counted in fullCount), -2 when
   * `length > maxRecord` (can never fit). At most one reservation is outstanding;
   * a second reserve() without commit() replaces the first.
   */
  reserve(length: number): number {
    if (!(length >= 0 && length <= this.maxRecord)) {
      this.resStart = -1; // a failed reserve() leaves nothing to commit
      return -2;
    }
    const need = kRecordHeaderBytes + ((length + 7) & ~7);
    const tail = this.tail;
    const pos = tail & this.mask;
    const toEnd = this.capacity - pos;
    const span = need <= toEnd ? need : toEnd + need;
    if (((tail - this.headCache) >>> 0) + span > this.capacity) {
      // Acquire: reading HEAD tells us the consumer finished reading the bytes
      // below it (it stored HEAD after its reads), so we may overwrite them.
      this.headCache = Atomics.load(this.header, kHeadField) >>> 0;
      if (((tail - this.headCache) >>> 0) + span > this.capacity) {
        // Only the producer writes this counter; the atomic add keeps readers in
        // other threads from seeing a torn or stale-forever value.
        Atomics.add(this.header, kFullCountField, 1);
        this.resStart = -1;
        return -1;
      }
    }
    if (need <= toEnd) {
      this.resStart = tail;
      this.resLength = length;
      return pos + kRecordHeaderBytes;
    }
    // Wrap: mark the tail end as skipped. A plain write is enough: it becomes
    // visible with the TAIL store in commit(), which also covers the record at 0.
    this.words[pos >>> 2] = kWrapMarker;
    this.resStart = (tail + toEnd) >>> 0;
    this.resLength = length;
    return kRecordHeaderBytes;
  }

  /** Publish the reserved record, optionally shrunk to `length` <= the reserved length. */
  commit(length?: number): void {
    const start = this.resStart;
    if (start < 0) throw new BadRecordError('Ring.commit() without a reservation');
    let len = this.resLength;
    if (length !== undefined) {
      if (!(length >= 0 && length <= len)) {
        throw new BadRecordError(`Ring.commit(${length}) exceeds the reserved length ${len}`);
      }
      len = length;
    }
    const w = (start & this.mask) >>> 2;
    this.words[w] = len;
    this.words[w + 1] = 0;
    const tail = (start + kRecordHeaderBytes + ((len + 7) & ~7)) >>> 0;
    this.tail = tail;
    this.resStart = -1;
    // Release: the payload and header writes above precede this store in program
    // order, so a consumer whose Atomics.load sees the new TAIL sees those bytes.
    Atomics.store(this.header, kTailField, tail | 0);
  }

  /** reserve + copy + commit. Does not notify: call notify() once per batch. */
  push(src: Uint8Array, srcOffset = 0, srcLength = src.length - srcOffset): RingStatusCode {
    const off = this.reserve(srcLength);
    if (off < 0) return off === -1 ? RingStatus.FULL : RingStatus.TOO_LARGE;
    const data = this.data;
    // TypedArray.set is a memcpy; a JS byte loop is ~5x slower already at 64 bytes
    // (measured on Node 20). Only tiny slices are copied by hand, to spare the
    // subarray() view allocation.
    if (srcOffset === 0 && srcLength === src.length) {
      data.set(src, off);
    } else if (srcLength <= 16) {
      for (let i = 0; i < srcLength; i++) data[off + i] = src[srcOffset + i]!;
    } else {
      data.set(src.subarray(srcOffset, srcOffset + srcLength), off);
    }
    this.commit();
    return RingStatus.OK;
  }

  /**
   * Wake the consumer if, and only if, it announced it is sleeping. Cheap when it
   * is not (one atomic load of a line the consumer rarely writes).
   */
  notify(): void {
    const h = this.header;
    // The load is ordered after our TAIL store (both seq_cst). Either the consumer
    // re-checked TAIL after our store (and saw the data, so it will not sleep), or
    // its C_SLEEP=1 store precedes our load and we see it here: no lost wake-up.
    // The CAS makes one notify per sleep: later notify() calls see 0 and skip the
    // syscall; if the consumer has not reached Atomics.wait yet, its wait sees 0
    // ≠ 1 and returns at once.
    if (Atomics.load(h, kConsumerSleepField) !== 0 && Atomics.compareExchange(h, kConsumerSleepField, 1, 0) === 1) {
      Atomics.notify(h, kConsumerSleepField);
    }
  }

  /** True when reserve(length) would succeed now (producer side). */
  canReserve(length: number): boolean {
    if (!(length >= 0 && length <= this.maxRecord)) return false;
    const need = kRecordHeaderBytes + ((length + 7) & ~7);
    const pos = this.tail & this.mask;
    const toEnd = this.capacity - pos;
    const span = need <= toEnd ? need : toEnd + need;
    // Acquire, as in reserve().
    this.headCache = Atomics.load(this.header, kHeadField) >>> 0;
    return ((this.tail - this.headCache) >>> 0) + span <= this.capacity;
  }

  /**
   * Block (Atomics.wait; worker threads, or a main thread that may block) until a
   * record of `length` payload bytes fits, the ring is closed, or `timeoutMs`
   * passes. Returns true when it fits. Call notify() before waiting, or the
   * consumer may be asleep on data you already committed.
   */
  waitForSpace(length: number, timeoutMs = Infinity): boolean {
    if (this.canReserve(length)) return true;
    if (length > this.maxRecord) return false;
    const h = this.header;
    const deadline = timeoutMs === Infinity ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      if (Atomics.load(h, kClosedField) !== 0) return false;
      // Announce, then re-check: pairs with release() storing HEAD before it loads
      // P_SLEEP (see notify() for the argument).
      Atomics.store(h, kProducerSleepField, 1);
      if (this.canReserve(length) || Atomics.load(h, kClosedField) !== 0) {
        Atomics.store(h, kProducerSleepField, 0);
        return this.canReserve(length);
      }
      const left = deadline === Infinity ? Infinity : deadline - Date.now();
      if (left <= 0) {
        Atomics.store(h, kProducerSleepField, 0);
        return false;
      }
      Atomics.wait(h, kProducerSleepField, 1, left);
      // Woken, timed out or 'not-equal': clear our flag in case nobody did.
      Atomics.store(h, kProducerSleepField, 0);
      if (this.canReserve(length)) return true;
    }
  }

  /**
   * Event-loop-friendly waitForSpace: null when `length` already fits (or the ring
   * is closed, or it can never fit); otherwise a promise resolved by the consumer's
   * next release() (or close()); then try again. Atomics.waitAsync never blocks the
   * event loop, and a pending one does not keep the process alive by itself.
   */
  waitForSpaceAsync(length: number): Promise<void> | null {
    if (length > this.maxRecord || this.canReserve(length)) return null;
    const h = this.header;
    if (Atomics.load(h, kClosedField) !== 0) return null;
    Atomics.store(h, kProducerSleepField, 1); // announce, then re-check (see waitForSpace)
    if (this.canReserve(length) || Atomics.load(h, kClosedField) !== 0) {
      Atomics.store(h, kProducerSleepField, 0);
      return null;
    }
    const r = waitAsync(h, kProducerSleepField, 1);
    // Synchronous result: the flag was already cleared by a release(): space came.
    return r.async ? (r.value as Promise<unknown> as Promise<void>) : null;
  }

  // ===================== consumer side =====================

  /**
   * Call `fn(data, offset, length)` for each record published before the call, up
   * to `maxRecords`; the view is valid only during the call (copy what you keep).
   * Releases the consumed space (at the end, and every quarter ring on long drains,
   * always only for records whose callback returned). Returns the count.
   */
  drain(fn: (data: Uint8Array, offset: number, length: number) => void, maxRecords = Infinity): number {
    // Acquire: reading TAIL makes every record below it (written before the
    // producer's TAIL store) visible to the plain reads below.
    const tail = Atomics.load(this.header, kTailField) >>> 0;
    this.tailCache = tail;
    this.peekNext = -1;
    let pos = this.readPos;
    if (pos === tail) return 0;
    const data = this.data;
    const words = this.words;
    const mask = this.mask;
    const max = this.maxRecord;
    const quarter = this.capacity >>> 2;
    let releasedAt = pos;
    let n = 0;
    while (pos !== tail && n < maxRecords) {
      let p = pos & mask;
      let len = words[p >>> 2]!;
      if (len === kWrapMarker) {
        pos = (pos + this.capacity - p) >>> 0; // the record that follows starts at 0
        p = 0;
        len = words[0]!;
      }
      if (len > max) throw new BadRecordError(`ring record length ${len} at ${p} exceeds maxRecord ${max}`);
      pos = (pos + kRecordHeaderBytes + ((len + 7) & ~7)) >>> 0;
      // Consumed before the callback runs: a callback that throws does not get the
      // same record again (no poison-record loop). Its bytes stay valid during the
      // call because space is given back only by release().
      this.readPos = pos;
      fn(data, p + kRecordHeaderBytes, len);
      n++;
      if (((pos - releasedAt) >>> 0) >= quarter) {
        this.release();
        releasedAt = pos;
      }
    }
    if (pos !== releasedAt) this.release();
    return n;
  }

  /** Offset of the next unread record's payload (sets peekLength), or -1 if none. */
  peek(): number {
    let pos = this.readPos;
    if (pos === this.tailCache) {
      // Acquire, as in drain().
      this.tailCache = Atomics.load(this.header, kTailField) >>> 0;
      if (pos === this.tailCache) {
        this.peekNext = -1;
        this.peekLength = 0;
        return -1;
      }
    }
    let p = pos & this.mask;
    let len = this.words[p >>> 2]!;
    if (len === kWrapMarker) {
      pos = (pos + this.capacity - p) >>> 0;
      p = 0;
      len = this.words[0]!;
      this.readPos = pos; // the skipped tail end is released with the next release()
    }
    if (len > this.maxRecord) {
      throw new BadRecordError(`ring record length ${len} at ${p} exceeds maxRecord ${this.maxRecord}`);
    }
    this.peekLength = len;
    this.peekNext = (pos + kRecordHeaderBytes + ((len + 7) & ~7)) >>> 0;
    return p + kRecordHeaderBytes;
  }

  /** Move past the peeked record. Its space is not given back until release(). */
  skip(): void {
    if (this.peekNext < 0) return; // nothing peeked (peek returned -1, or skipped already)
    this.readPos = this.peekNext;
    this.peekNext = -1;
  }

  /** Give the consumed space back to the producer, and wake it if it waits for space. */
  release(): void {
    const h = this.header;
    // Release: our reads of the consumed records precede this store, so the
    // producer (which acquires HEAD) cannot overwrite bytes we are still reading.
    Atomics.store(h, kHeadField, this.readPos | 0);
    // Ordered after the HEAD store (seq_cst): either the producer's re-check saw
    // the new HEAD, or we see its P_SLEEP=1 here. CAS: one wake per sleep.
    if (Atomics.load(h, kProducerSleepField) !== 0 && Atomics.compareExchange(h, kProducerSleepField, 1, 0) === 1) {
      Atomics.notify(h, kProducerSleepField);
    }
  }

  /** True when a record is ready for the consumer. */
  hasData(): boolean {
    // Acquire, as in drain().
    this.tailCache = Atomics.load(this.header, kTailField) >>> 0;
    return this.tailCache !== this.readPos;
  }

  /**
   * Block (Atomics.wait) until data is available, the ring is closed, or
   * `timeoutMs` passes. Returns true when data is available. For worker threads
   * (the I/O thread uses waitForDataAsync).
   */
  waitForData(timeoutMs = Infinity): boolean {
    if (this.hasData()) return true;
    const h = this.header;
    const deadline = timeoutMs === Infinity ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      if (Atomics.load(h, kClosedField) !== 0) return this.hasData();
      // Announce, then re-check TAIL: see notify() for why this cannot lose a wake-up.
      Atomics.store(h, kConsumerSleepField, 1);
      if (this.hasData() || Atomics.load(h, kClosedField) !== 0) {
        Atomics.store(h, kConsumerSleepField, 0);
        return this.hasData();
      }
      const left = deadline === Infinity ? Infinity : deadline - Date.now();
      if (left <= 0) {
        Atomics.store(h, kConsumerSleepField, 0);
        return false;
      }
      Atomics.wait(h, kConsumerSleepField, 1, left);
      // Woken, timed out or 'not-equal': clear our flag in case nobody did.
      Atomics.store(h, kConsumerSleepField, 0);
      if (this.hasData()) return true;
    }
  }

  /**
   * null when data is already available (or the ring is closed: check `closed`);
   * otherwise a promise resolved when the producer's notify() (or close()) rings.
   * Never blocks the event loop. A pending promise does not keep the process alive.
   */
  waitForDataAsync(): Promise<void> | null {
    if (this.hasData()) return null;
    const h = this.header;
    if (Atomics.load(h, kClosedField) !== 0) return null;
    Atomics.store(h, kConsumerSleepField, 1); // announce, then re-check (see notify())
    if (this.hasData() || Atomics.load(h, kClosedField) !== 0) {
      Atomics.store(h, kConsumerSleepField, 0);
      return null;
    }
    const r = waitAsync(h, kConsumerSleepField, 1);
    // Synchronous 'not-equal': a notify() already cleared the flag: data is here.
    return r.async ? (r.value as Promise<unknown> as Promise<void>) : null;
  }

  // ===================== both =====================

  /** Bytes currently occupied, wrap padding included (a snapshot, for stats). */
  get usedBytes(): number {
    const tail = Atomics.load(this.header, kTailField);
    const head = Atomics.load(this.header, kHeadField);
    return (tail - head) >>> 0;
  }

  /** How many reserve()/push() calls returned FULL since the ring was created. */
  get fullCount(): number {
    return Atomics.load(this.header, kFullCountField) >>> 0;
  }

  /** True while the consumer announced it is (about to be) asleep in a wait. */
  get consumerSleeping(): boolean {
    return Atomics.load(this.header, kConsumerSleepField) !== 0;
  }

  /** True while the producer announced it is (about to be) asleep waiting for space. */
  get producerSleeping(): boolean {
    return Atomics.load(this.header, kProducerSleepField) !== 0;
  }

  /**
   * Set the shutdown flag and wake both sides; later waits return at once. Records
   * already in the ring stay drainable; reserve()/push() do not check the flag (hot
   * path): a producer stops on its own when it sees `closed`.
   */
  close(): void {
    const h = this.header;
    // Store CLOSED before clearing the flags: a side that announced sleep and then
    // re-checks CLOSED either sees it, or its wait finds the flag already 0.
    Atomics.store(h, kClosedField, 1);
    Atomics.store(h, kConsumerSleepField, 0);
    Atomics.store(h, kProducerSleepField, 0);
    Atomics.notify(h, kConsumerSleepField);
    Atomics.notify(h, kProducerSleepField);
  }

  get closed(): boolean {
    return Atomics.load(this.header, kClosedField) !== 0;
  }

  /**
   * Empty the ring and reopen it. Only when neither side is running (e.g. a worker
   * is being replaced). Resets this instance's local state; other Ring instances on
   * the same sab must attach again with Ring.from(). fullCount is kept (stats).
   */
  reset(): void {
    const h = this.header;
    Atomics.store(h, kTailField, 0);
    Atomics.store(h, kHeadField, 0);
    Atomics.store(h, kConsumerSleepField, 0);
    Atomics.store(h, kProducerSleepField, 0);
    Atomics.store(h, kClosedField, 0);
    this.tail = 0;
    this.headCache = 0;
    this.resStart = -1;
    this.resLength = 0;
    this.readPos = 0;
    this.tailCache = 0;
    this.peekNext = -1;
    this.peekLength = 0;
  }
}
