/**
 * Log-linear latency histogram (HdrHistogram-like), fixed memory, O(1) record.
 *
 * Values are recorded in integer nanoseconds. Values below 2^SUB_BITS (256 ns) each get their
 * own bucket; above that every power of two [2^e, 2^(e+1)) is split into HALF (128) equal
 * sub-buckets, so a bucket's width is at most 1/128 of its lower bound (< 0.8 % relative
 * error). The top octave ends at 2^MAX_EXP ns (~18 minutes); larger values are clamped into it.
 *
 *   index:  0 .. 255                     | 256 + (e - 8) * 128 + (v >> (e - 7)) - 128
 *   value:  exact (v < 256)              | [m * 2^(e-7), (m + 1) * 2^(e-7)),  m = v >> (e - 7)
 *
 * Percentiles report the highest value equivalent to the bucket (as HdrHistogram does),
 * clamped to the largest value recorded. Histograms from several processes merge by adding
 * bucket counts: never merge percentiles.
 */

const SUB_BITS = 8;
const SUB = 1 << SUB_BITS; // 256 exact buckets
const HALF = SUB >>> 1; // 128 sub-buckets per octave
const MAX_EXP = 40; // top octave is [2^39, 2^40) ns
export const BUCKET_COUNT = SUB + (MAX_EXP - SUB_BITS) * HALF;
const MAX_VALUE = 2 ** MAX_EXP - 1;
const TWO_31 = 2 ** 31;

/** Sparse wire form: [index, count, index, count, ...] plus exact min/max/sum. */
export interface SparseHistogram {
  buckets: number[];
  total: number;
  min: number;
  max: number;
  sum: number;
}

/** Bucket index of a non-negative integer value in ns (clamped to the covered range). */
export function bucketIndex(v: number): number {
  if (v < SUB) return v < 0 ? 0 : v;
  if (v < TWO_31) {
    const e = 31 - Math.clz32(v);
    return SUB + (e - SUB_BITS) * HALF + (v >>> (e - SUB_BITS + 1)) - HALF;
  }
  if (v > MAX_VALUE) v = MAX_VALUE;
  const e = Math.floor(Math.log2(v));
  // Division by a power of two is exact in doubles; floor gives the top SUB_BITS bits.
  return SUB + (e - SUB_BITS) * HALF + Math.floor(v / 2 ** (e - SUB_BITS + 1)) - HALF;
}

/** Highest value that maps to bucket `i`. */
export function bucketHighest(i: number): number {
  if (i < SUB) return i;
  const k = i - SUB;
  const e = SUB_BITS + Math.floor(k / HALF);
  const m = HALF + (k % HALF);
  return (m + 1) * 2 ** (e - SUB_BITS + 1) - 1;
}

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKET_COUNT);
  total = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Record one value in ns (rounded to an integer, negatives count as 0). */
  record(ns: number): void {
    const v = ns > 0 ? Math.round(ns) : 0;
    this.counts[bucketIndex(v)]! += 1;
    this.total++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.min = Infinity;
    this.max = 0;
    this.sum = 0;
  }

  /** Value (ns) at percentile p in [0, 100]; 0 when empty. */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    const c = this.counts;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += c[i]!;
      if (seen >= rank) return Math.max(this.min, Math.min(bucketHighest(i), this.max));
    }
    return this.max;
  }

  mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total;
  }

  /** Add another histogram's buckets into this one. */
  merge(other: LatencyHistogram | SparseHistogram): void {
    if (other instanceof LatencyHistogram) {
      for (let i = 0; i < BUCKET_COUNT; i++) this.counts[i]! += other.counts[i]!;
    } else {
      const b = other.buckets;
      for (let j = 0; j + 1 < b.length; j += 2) this.counts[b[j]!]! += b[j + 1]!;
    }
    if (other.total === 0) return;
    this.total += other.total;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  toSparse(): SparseHistogram {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKET_COUNT; i++) {
      const n = this.counts[i]!;
      if (n !== 0) buckets.push(i, n);
    }
    return { buckets, total: this.total, min: this.total === 0 ? 0 : this.min, max: this.max, sum: this.sum };
  }

  static fromSparse(s: SparseHistogram): LatencyHistogram {
    const h = new LatencyHistogram();
    h.merge(s);
    return h;
  }
}
