// Shared by the fuzz tests: a seeded PRNG and a FlatBuffers ByteBuffer that refuses any read
// outside the frame under test (so a verifier that lets a bad offset through is caught).
import * as flatbuffers from 'flatbuffers';

/** xorshift32, returning floats in [0, 1). Seeded so a failure can be replayed with FUZZ_SEED. */
export function prng(seed: number): () => number {
  let s = seed || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

export class OutOfFrame extends Error {}

/** A ByteBuffer that throws OutOfFrame on any read outside [lo, hi). */
export class FencedByteBuffer extends flatbuffers.ByteBuffer {
  lo = 0;
  hi = 0;
  private check(p: number, n: number): void {
    if (!(p >= this.lo && p + n <= this.hi)) throw new OutOfFrame(`read of ${n} at ${p} outside [${this.lo}, ${this.hi})`);
  }
  override readUint8(p: number): number { this.check(p, 1); return super.readUint8(p); }
  override readUint16(p: number): number { this.check(p, 2); return super.readUint16(p); }
  override readInt32(p: number): number { this.check(p, 4); return super.readInt32(p); }
  override __string(p: number, enc?: flatbuffers.Encoding): string | Uint8Array {
    const s = p + this.readInt32(p);
    this.check(s, 4 + this.readInt32(s));
    return super.__string(p, enc);
  }
}
