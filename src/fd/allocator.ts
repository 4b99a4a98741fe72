/**
 * Fixed-range fd allocator with Swoole semantics (pure logic, no I/O, I/O thread only).
 *
 * - An fd is an integer in 1..maxFd (default FD_MAX = 2^24 − 1), unique among live fds.
 * - fds auto-increment from 1, the cursor wraps to 1 after maxFd, live fds are skipped,
 *   and a released fd is handed out again only when the cursor comes round to it
 *   (reuse as late as possible).
 * - Every allocation bumps the fd's generation; a handle (generation × 2^24 + fd) names
 *   one allocation for ever: `isCurrent(handle)` is true only while that allocation is live.
 *   A command addressed to a stale handle must be dropped, never delivered to the new owner.
 * - Exhaustion (`live === maxLive`) is the return value 0, never an exception.
 *
 * Memory, allocated once in the constructor (see `bytesFor`):
 *
 * ```
 *   gens: Uint16Array[maxFd + 1]   generation of the latest allocation of fd i (0 = never)
 *   bits: Int32Array[⌈(maxFd+1)/32⌉] live bitmap, bit i = fd i is live
 *         bit 0 and the padding bits after maxFd are set for ever ("live"), so the word
 *         scan in alloc() skips them without any range check.
 * ```
 * For FD_MAX: 2^24 × 2 B + 2^19 × 4 B = 33,554,432 + 2,097,152 = 35,651,584 B (34 MiB).
 *
 * Generation wrap, and why it is safe. Generations run 1..65535 and then wrap to 1
 * (0 is skipped: it means "never allocated"). A stale handle can alias a new allocation
 * only if the same fd is allocated again 65,535 times while the holder still keeps that
 * handle. Between two allocations of one fd the cursor must travel the whole range, and
 * on each lap it allocates every fd that was free when it passed: at least
 * maxFd − maxLive fds per lap. With the defaults (maxFd 16,777,215, maxLive 1,048,576)
 * that is ≥ 65,535 × 15.7M ≈ 1.03 × 10^12 allocations, about 12 days at a sustained
 * 1M new connections per second (years at realistic rates). Handles only live in
 * commands in flight between a worker and the I/O thread (micro- to milliseconds), so
 * aliasing needs a command delayed by that long. Small `maxFd` or maxLive ≈ maxFd
 * shorten the lap and so this margin: that is the trade-off of those test settings.
 *
 * Complexity: release, isLive, isCurrent, handle are O(1). alloc is O(1) when the fd
 * under the cursor is free (the common case: live fds are a small share of the range)
 * and otherwise skips 32 live fds per step; in the worst case (every fd but one live)
 * it scans ⌈maxFd/32⌉ words. No method allocates after construction.
 */
import { intOption, invalidOption, onlyKnownOptions } from '../shared/errors.js';

/** Largest fd: 2^24 − 1. */
export const FD_MAX = 16_777_215;
/** Handle = generation × FD_SPAN + fd (a safe integer below 2^40). */
const FD_SPAN = 16_777_216;
const DEFAULT_MAX_LIVE = 1_048_576;

export interface FdAllocatorOptions {
  /** Cap on live fds, integer 1..FD_MAX (default 1,048,576, clamped to maxFd when not given). */
  maxLive?: number;
  /**
   * Largest fd handed out, integer 1..FD_MAX (default FD_MAX). For tests and small
   * embedded servers: a small range forces wrap and reuse quickly and needs less memory.
   */
  maxFd?: number;
}

export class FdAllocator {
  /** Bytes of typed-array memory an allocator with this `maxFd` allocates (once). */
  static bytesFor(maxFd: number = FD_MAX): number {
    const n = intOption(maxFd, 'maxFd', FD_MAX, 1, FD_MAX) + 1;
    return n * 2 + Math.ceil(n / 32) * 4;
  }

  private readonly gens: Uint16Array;
  private readonly bits: Int32Array;
  private readonly nWords: number;
  private readonly cap: number;
  private readonly top: number;
  /** Next fd the cursor looks at (1..maxFd). */
  private next = 1;
  private count = 0;

  constructor(options: FdAllocatorOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('options must be an object');
    }
    onlyKnownOptions(options, ['maxFd', 'maxLive']);
    const maxFd = intOption(options.maxFd, 'maxFd', FD_MAX, 1, FD_MAX);
    let maxLive = intOption(options.maxLive, 'maxLive', DEFAULT_MAX_LIVE, 1, FD_MAX);
    if (options.maxLive === undefined) {
      maxLive = Math.min(maxLive, maxFd);
    } else if (maxLive > maxFd) {
      throw invalidOption('maxLive', `at most options.maxFd (${maxFd}), got ${maxLive}`, 'range');
    }
    this.top = maxFd;
    this.cap = maxLive;
    this.gens = new Uint16Array(maxFd + 1);
    this.nWords = Math.ceil((maxFd + 1) / 32);
    this.bits = new Int32Array(this.nWords);
    // fd 0 and the padding bits past maxFd are never free: mark them live for ever.
    this.bits[0] = 1;
    const last = this.nWords - 1;
    const usedInLast = (maxFd + 1) - last * 32; // 1..32 real bits in the last word
    if (usedInLast < 32) this.bits[last]! |= -1 << usedInLast;
  }

  /** Live fds now. */
  get live(): number {
    return this.count;
  }

  get maxLive(): number {
    return this.cap;
  }

  get maxFd(): number {
    return this.top;
  }

  /**
   * Allocate the first free fd at or after the cursor (cyclically) and bump its
   * generation. Returns 0, without side effects, when `live === maxLive`.
   */
  alloc(): number {
    if (this.count === this.cap) return 0;
    const bits = this.bits;
    let fd = this.next;
    let w = fd >>> 5;
    // Free bits at or after the cursor in its word (the common case: one load).
    let free = ~bits[w]! & (-1 << (fd & 31));
    if (free === 0) {
      // Skip whole words of live fds; kept out of line so alloc() stays small enough
      // for V8 to inline into callers.
      w = this.scanFrom(w);
      if (w < 0) return 0;
      free = ~bits[w]!;
    }
    const low = free & -free; // lowest free bit
    fd = (w << 5) | (31 - Math.clz32(low));
    bits[w] = bits[w]! | low;
    const gens = this.gens;
    const g = (gens[fd]! + 1) & 0xffff;
    gens[fd] = g === 0 ? 1 : g;
    this.next = fd === this.top ? 1 : fd + 1;
    this.count++;
    return fd;
  }

  /**
   * Index of the first word after `w` (cyclically, `w` itself last) with a free bit.
   * count < cap <= maxFd guarantees one exists and the reserved bits are set, so the
   * result holds a real fd. The step bound cannot trigger while the invariants hold;
   * it turns a corrupted bitmap into "exhausted" (-1) instead of a hang.
   */
  private scanFrom(w: number): number {
    const bits = this.bits;
    const nWords = this.nWords;
    for (let steps = 0; steps < nWords; steps++) {
      w = w + 1 === nWords ? 0 : w + 1;
      if (bits[w] !== -1) return w;
    }
    return -1;
  }

  /** Release a live fd. False (and no change) if `fd` is not a live fd. */
  release(fd: number): boolean {
    if (fd >>> 0 !== fd || fd === 0 || fd > this.top) return false;
    const w = fd >>> 5;
    const bit = 1 << (fd & 31);
    const word = this.bits[w]!;
    if ((word & bit) === 0) return false;
    this.bits[w] = word & ~bit;
    this.count--;
    return true;
  }

  isLive(fd: number): boolean {
    if (fd >>> 0 !== fd || fd === 0 || fd > this.top) return false;
    return (this.bits[fd >>> 5]! & (1 << (fd & 31))) !== 0;
  }

  /** Generation of the fd's latest allocation (1..65535), 0 if never allocated or out of range. */
  generation(fd: number): number {
    if (fd >>> 0 !== fd || fd > this.top) return 0;
    return this.gens[fd]!;
  }

  /** Handle naming the current allocation of a live fd; 0 if `fd` is not live. */
  handle(fd: number): number {
    if (!this.isLive(fd)) return 0;
    return this.gens[fd]! * FD_SPAN + fd;
  }

  /** The fd part of a handle. */
  fdOf(handle: number): number {
    return handle % FD_SPAN;
  }

  /** The generation part of a handle. */
  generationOf(handle: number): number {
    return Math.floor(handle / FD_SPAN);
  }

  /** True only while the allocation this handle names is live (false for any junk number). */
  isCurrent(handle: number): boolean {
    const fd = handle % FD_SPAN;
    if (fd >>> 0 !== fd || fd === 0 || fd > this.top) return false;
    return this.gens[fd] === (handle - fd) / FD_SPAN && (this.bits[fd >>> 5]! & (1 << (fd & 31))) !== 0;
  }
}
