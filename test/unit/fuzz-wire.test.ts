// Fuzz: random and mutated client frames through the binary and json codecs' decode().
// Properties:
//   1. decode throws only BadFrameError (RW_ERR_BAD_FRAME), never another exception, never hangs;
//   2. binary: when a frame passes, the payload view lies inside the frame, and the codec's values
//      equal what the generated WireFrame reader returns when every one of its reads is fenced to
//      the frame (the frame sits between canary bytes in a bigger buffer, as in a ring);
//   3. json: when a frame passes, event is a string and ref an integer in [0, 2^32).
// Seeded PRNG (override with FUZZ_SEED=n); failures print the seed, case and bytes to reproduce.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as flatbuffers from 'flatbuffers';
import { FencedByteBuffer, OutOfFrame, prng } from '../support/fuzz.js';
import { fb } from '../../src/shared/records.js';
import { BadFrameError } from '../../src/shared/errors.js';
import { binaryCodec, createDecodedFrame, decodeFrame, encodeFrame, jsonCodec } from '../../src/shared/wire.js';

const CASES = 150_000;
const SEED = Number(process.env.FUZZ_SEED ?? 0xf00dcafe) >>> 0;
const CANARY = 0xa5;
const PAD = 64;


const INTERESTING32 = [0, 1, 2, 3, 4, -1, -4, 0x7fffffff, -0x80000000, 0xffff, 0x8000, 64, 1 << 20];
const INTERESTING16 = [0, 1, 2, 3, 4, 6, 0xffff, 0x8000, 0x7fff, 200];

function mutate(rand: () => number, src: Uint8Array, maxOps = 3): Uint8Array {
  let b = src.slice();
  const n = 1 + Math.floor(rand() * maxOps);
  for (let m = 0; m < n; m++) {
    const op = Math.floor(rand() * 7);
    const len = b.length;
    if (op === 0 && len > 0) {
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) b[Math.floor(rand() * len)]! ^= 1 << Math.floor(rand() * 8);
    } else if (op === 1 && len > 0) {
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) b[Math.floor(rand() * len)] = Math.floor(rand() * 256);
    } else if (op === 2) {
      b = b.slice(0, Math.floor(rand() * (len + 1)));
    } else if (op === 3) {
      const ext = new Uint8Array(len + 1 + Math.floor(rand() * 16));
      ext.set(b);
      for (let i = len; i < ext.length; i++) ext[i] = Math.floor(rand() * 256);
      b = ext;
    } else if (op === 4 && len >= 4) {
      const p = rand() < 0.8 ? 4 * Math.floor(rand() * (len >> 2)) : Math.floor(rand() * (len - 3));
      let v = INTERESTING32[Math.floor(rand() * INTERESTING32.length)]!;
      if (rand() < 0.3) v = len - p + Math.floor(rand() * 9) - 4;
      if (p + 4 <= len) new DataView(b.buffer).setInt32(p, v, true);
    } else if (op === 5 && len >= 2) {
      const p = 2 * Math.floor(rand() * (len >> 1));
      if (p + 2 <= len) new DataView(b.buffer).setUint16(p, INTERESTING16[Math.floor(rand() * INTERESTING16.length)]!, true);
    } else if (len >= 4) {
      const p = 4 * Math.floor(rand() * (len >> 2));
      const dv = new DataView(b.buffer);
      if (p + 4 <= len) dv.setInt32(p, dv.getInt32(p, true) + Math.floor(rand() * 17) - 8, true);
    }
  }
  return b;
}

function randomBytes(rand: () => number, max: number): Uint8Array {
  const b = new Uint8Array(Math.floor(rand() * max));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * (rand() < 0.5 ? 16 : 256));
  return b;
}

function binaryCorpus(rand: () => number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const events = ['', 'echo', 'chat.send', 'évènement', '\u{1F600}', 'x'.repeat(40)];
  for (let i = 0; i < 60; i++) {
    const payload = randomBytes(rand, 48);
    out.push(encodeFrame({
      event: events[i % events.length]!, eventId: i % 3 === 0 ? i : 0, ref: Math.floor(rand() * 2 ** 32), payload,
    }));
    // Builder-made frames (default fields omitted, different layout).
    const b = new flatbuffers.Builder(64);
    const ev = i % 2 === 0 ? b.createString(events[i % events.length]!) : 0;
    const pay = i % 3 !== 0 ? fb.WireFrame.createPayloadVector(b, payload) : 0;
    fb.WireFrame.startWireFrame(b);
    if (ev) fb.WireFrame.addEvent(b, ev);
    fb.WireFrame.addEventId(b, i % 5);
    fb.WireFrame.addRef(b, i);
    if (pay) fb.WireFrame.addPayload(b, pay);
    b.finish(fb.WireFrame.endWireFrame(b));
    out.push(b.asUint8Array().slice());
  }
  return out;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * What surrounds the frame: a canary, zeros (the most adversarial for NUL and offset checks:
 * a verifier that peeks one byte too far then accepts), or random bytes, in turn.
 */
function surround(host: Uint8Array, i: number, noise: Uint8Array): void {
  const mode = i % 3;
  if (mode === 0) host.fill(CANARY);
  else if (mode === 1) host.fill(0);
  else host.set(noise);
}

test(`fuzz: ${CASES} random and mutated binary frames through binaryCodec.decode (seed ${SEED})`, { timeout: 300_000 }, (t) => {
  const rand = prng(SEED);
  const corpus = binaryCorpus(rand);
  const host = new Uint8Array(PAD + 4096 + PAD);
  const noise = new Uint8Array(host.length).map(() => Math.floor(rand() * 256));
  const bb = new FencedByteBuffer(host);
  const frame = new fb.WireFrame();
  const out = createDecodedFrame();
  let passed = 0;
  let rejected = 0;
  for (let i = 0; i < CASES; i++) {
    const bytes = rand() < 0.25 ? randomBytes(rand, 80) : mutate(rand, corpus[Math.floor(rand() * corpus.length)]!);
    const off = PAD + Math.floor(rand() * 8);
    const end = off + bytes.length;
    surround(host, i, noise);
    host.set(bytes, off);
    try {
      binaryCodec.decode(host, off, bytes.length, true, out);
    } catch (err) {
      if (err instanceof BadFrameError && err.code === 'RW_ERR_BAD_FRAME') {
        rejected++;
        continue;
      }
      assert.fail(`case ${i} (seed ${SEED}): decode threw ${String(err)} for ${hex(bytes)}`);
    }
    passed++;
    const p = out.payload;
    if (p.length > 0 && !(p.byteOffset >= off && p.byteOffset + p.length <= end)) {
      assert.fail(`case ${i} (seed ${SEED}): payload view [${p.byteOffset}, +${p.length}) outside [${off}, ${end}): ${hex(bytes)}`);
    }
    // The generated reader, every read fenced to the frame, must see the same values.
    bb.lo = off;
    bb.hi = end;
    try {
      frame.__init(off + bb.readInt32(off), bb);
      const ev = frame.event() ?? '';
      const pay = frame.payloadArray();
      if (pay && !(pay.byteOffset >= off && pay.byteOffset + pay.length <= end)) throw new OutOfFrame('payloadArray');
      assert.equal(out.event, ev);
      assert.equal(out.eventId, frame.eventId());
      assert.equal(out.ref, frame.ref());
      assert.equal(p.length, frame.payloadLength());
      if (p.length > 0) assert.equal(p.byteOffset, pay!.byteOffset);
    } catch (err) {
      assert.fail(`case ${i} (seed ${SEED}): verified frame read inconsistently or out of frame: ${String(err)}; ${hex(bytes)}`);
    }
  }
  t.diagnostic(`passed verification: ${passed}, rejected: ${rejected}`);
  assert.ok(passed > CASES * 0.05, `only ${passed} cases passed verification`);
  assert.ok(rejected > CASES * 0.2, `only ${rejected} cases were rejected`);
});

// binaryCodec.decode reads frames laid out as encodeFrame lays them out (at a 4-aligned offset of a
// 4-aligned buffer, as in the worker's ring) at fixed positions, verifying as it reads; every other
// frame goes through verifyWireFrame and the vtable reader, which decodeFrame always uses. Both must
// accept the same frames and read the same fields: mutations of encodeFrame's layout (lengths,
// offsets, the NUL, truncation, extension) at aligned offsets, surrounded by canary, zero or random
// bytes, each decoded both ways.
test(`fuzz: ${CASES} mutated encodeFrame frames: the fixed-layout read of binaryCodec.decode agrees with verifyWireFrame + the vtable reader (seed ${SEED})`, { timeout: 300_000 }, (t) => {
  const rand = prng(SEED ^ 0x5bd1e995);
  // Names of 1 to 8 ASCII bytes take a cache keyed by their bytes as words: every length of it.
  const events = ['', 'ECHO', 'chat.send', 'évènement', 'x'.repeat(40), 'a', 'ab', 'abc', 'ECHO5', 'ECHO56', 'ECHO567', 'chat.snd', 'é'];
  const corpus: Uint8Array[] = [];
  for (let i = 0; i < 52; i++) {
    corpus.push(encodeFrame({ event: events[i % events.length]!, eventId: i % 4 === 0 ? i : 0, ref: Math.floor(rand() * 2 ** 32), payload: randomBytes(rand, 48) }).slice());
  }
  const host = new Uint8Array(PAD + 4096 + PAD);
  const noise = new Uint8Array(host.length).map(() => Math.floor(rand() * 256));
  const hot = createDecodedFrame();
  let agreedPass = 0;
  let agreedReject = 0;
  let hotLayout = 0;
  for (let i = 0; i < CASES; i++) {
    const src = corpus[Math.floor(rand() * corpus.length)]!;
    const bytes = rand() < 0.1 ? src : mutate(rand, src, 2);
    const off = PAD + 4 * Math.floor(rand() * 4);
    surround(host, i, noise);
    host.set(bytes, off);
    const frame = host.subarray(off, off + bytes.length);
    if (bytes.length >= 24 && Buffer.from(bytes.subarray(0, 24)).equals(Buffer.from(src.subarray(0, 24)))) hotLayout++;
    let hotErr: unknown = null;
    try {
      binaryCodec.decode(host, off, bytes.length, true, hot);
    } catch (err) {
      hotErr = err;
    }
    let ref: ReturnType<typeof decodeFrame> | null = null;
    let refErr: unknown = null;
    try {
      ref = decodeFrame(frame);
    } catch (err) {
      refErr = err;
    }
    if (hotErr !== null || refErr !== null) {
      if (!(hotErr instanceof BadFrameError && refErr instanceof BadFrameError)) {
        assert.fail(`case ${i} (seed ${SEED}): binaryCodec.decode ${hotErr === null ? 'accepted' : `threw ${String(hotErr)}`}, verifyWireFrame + reader ${refErr === null ? 'accepted' : `threw ${String(refErr)}`}: ${hex(bytes)}`);
      }
      agreedReject++;
      continue;
    }
    agreedPass++;
    assert.deepEqual(
      [hot.event, hot.eventId, hot.ref, hot.payload.byteOffset, hot.payload.length, hot.data === hot.payload],
      [ref!.event, ref!.eventId, ref!.ref, ref!.payload.byteOffset, ref!.payload.length, true],
      `case ${i} (seed ${SEED}): ${hex(bytes)}`);
  }
  t.diagnostic(`accepted by both: ${agreedPass}, rejected by both: ${agreedReject}, encodeFrame's header kept: ${hotLayout}`);
  assert.ok(agreedPass > CASES * 0.3 && agreedReject > CASES * 0.1 && hotLayout > CASES * 0.3, 'the mutations exercise both outcomes on the fixed layout');
});

function jsonCorpus(rand: () => number): Uint8Array[] {
  const te = new TextEncoder();
  const out: Uint8Array[] = [];
  const values = ['1', '-1', '1.5', '"s"', 'null', 'true', '[]', '{}', '[1,{"a":[null]}]', '"\\u00e9\\ud800"', '1e999', '4294967295', '4294967296'];
  for (let i = 0; i < 80; i++) {
    const v = (): string => values[Math.floor(rand() * values.length)]!;
    const parts = [`"cmd":${rand() < 0.8 ? '"ev' + i + '"' : v()}`];
    if (rand() < 0.7) parts.push(`"data":${v()}`);
    if (rand() < 0.6) parts.push(`"ref":${rand() < 0.5 ? String(Math.floor(rand() * 1000)) : v()}`);
    if (rand() < 0.2) parts.push('"__proto__":{"cmd":1}');
    out.push(te.encode(`{${parts.join(',')}}`));
  }
  out.push(te.encode('['.repeat(5000) + ']'.repeat(5000))); // deep nesting
  return out;
}

test(`fuzz: ${CASES} random and mutated JSON frames through jsonCodec.decode (seed ${SEED})`, { timeout: 300_000 }, (t) => {
  const rand = prng(SEED ^ 0x9e3779b9);
  const corpus = jsonCorpus(rand);
  const host = new Uint8Array(PAD + 16384 + PAD);
  const out = createDecodedFrame();
  let passed = 0;
  let rejected = 0;
  for (let i = 0; i < CASES; i++) {
    const r = rand();
    const base = corpus[Math.floor(rand() * corpus.length)]!;
    const bytes = r < 0.2 ? randomBytes(rand, 64) : r < 0.3 ? base : mutate(rand, base, 1);
    const off = PAD + Math.floor(rand() * 8);
    host.fill(0x20); // spaces: reading past the frame would still parse, so a leak would show
    host.set(bytes, off);
    try {
      jsonCodec.decode(host, off, bytes.length, rand() < 0.5, out);
    } catch (err) {
      if (err instanceof BadFrameError && err.code === 'RW_ERR_BAD_FRAME') {
        rejected++;
        continue;
      }
      assert.fail(`case ${i} (seed ${SEED}): decode threw ${String(err)} for ${hex(bytes)}`);
    }
    passed++;
    assert.equal(typeof out.event, 'string');
    assert.ok(Number.isInteger(out.ref) && out.ref >= 0 && out.ref <= 0xffffffff, `ref ${out.ref}`);
    // Decoding exactly the frame's bytes alone gives the same result (nothing outside was read).
    const alone = createDecodedFrame();
    jsonCodec.decode(bytes, 0, bytes.length, false, alone);
    assert.deepEqual([alone.event, alone.ref, alone.data], [out.event, out.ref, out.data]);
  }
  t.diagnostic(`passed: ${passed}, rejected: ${rejected}`);
  assert.ok(passed > CASES * 0.05, `only ${passed} cases passed`);
  assert.ok(rejected > CASES * 0.2, `only ${rejected} cases were rejected`);
});
