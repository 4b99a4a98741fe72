/**
 * Client wire codecs (client <-> server), pluggable per module:
 *
 *   binary (default)  one binary WebSocket message = one FlatBuffer whose root is a WireFrame
 *                     (schema/wire.fbs: event, event_id, ref, payload). Verified before any read.
 *   json              one text message = `{"cmd": string, "data": any, "ref"?: uint32}` (Swoft
 *                     JsonParser style). `cmd` is the event.
 *   raw               the whole message is the payload; event '' and ref 0 (a single-handler module).
 *
 * Workers decode a Message record's `data` with the connection's codec, straight from the ring:
 * `decode(ring.data, start, length, isBinary, out)` fills a caller-owned DecodedFrame (no
 * allocation but the payload view and the event string). Malformed input throws BadFrameError
 * (RW_ERR_BAD_FRAME), never anything else. `payload` views point into the ring and are valid only
 * during the handler call: copy what you keep.
 *
 * Clients and tests use encodeFrame/decodeFrame (binary codec) or a codec's encode().
 */

import { BadFrameError } from './errors.js';
import { eventLength, wireFrameSize, writeWireFrameAt } from './records.js';
import { verifyWireFrame } from './verify.js';

export interface DecodedFrame {
  /** Event (command) name; '' when the client sent only a numeric id, and for raw. */
  event: string;
  /** Numeric event id of the module's route table (binary codec only); 0 = use `event`. */
  eventId: number;
  /** Correlation id to echo in replies; 0 = none. */
  ref: number;
  /** binary/raw: a view of the payload bytes (into the source buffer); json: an empty array. */
  payload: Uint8Array;
  /** json: the parsed `data` member; binary/raw: the same view as `payload`. */
  data: unknown;
}

export interface Codec {
  readonly name: 'binary' | 'json' | 'raw';
  /** Whether encode() output is sent as a binary (true) or text (false) WebSocket message. */
  readonly binary: boolean;
  /**
   * Decode bytes[offset..offset+length) into `out`. Throws BadFrameError on malformed input, with
   * `out.ref` set when the frame's ref could be read (json), left as it was otherwise.
   */
  decode(bytes: Uint8Array, offset: number, length: number, isBinary: boolean, out: DecodedFrame): void;
  /**
   * Encode a server -> client message. payload: bytes (Uint8Array, ArrayBuffer or another
   * ArrayBuffer view), string (UTF-8), or any JSON value.
   * binary: the result may be a view of a shared pool (see encodeFrame): use the view, not `.buffer`.
   */
  encode(event: string, ref: number, payload: unknown): Uint8Array;
}

/** A fresh DecodedFrame to reuse across decode() calls. */
export function createDecodedFrame(): DecodedFrame {
  return { event: '', eventId: 0, ref: 0, payload: EMPTY, data: undefined };
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

function i32(b: Uint8Array, p: number): number {
  return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
}

/** Absolute position of a present field of the (verified) table at t, or 0 when absent. */
function field(b: Uint8Array, t: number, slot: number): number {
  const vt = t - i32(b, t);
  const vsize = ((b[vt]! | (b[vt + 1]! << 8)) << 16) >> 16;
  if (slot >= vsize) return 0;
  const fo = ((b[vt + slot]! | (b[vt + slot + 1]! << 8)) << 16) >> 16;
  return fo === 0 ? 0 : t + fo;
}

// Short ASCII strings (event names: a small vocabulary, on every message) are interned in a
// 256-entry cache keyed by a hash of their bytes: a hit returns the same string without
// allocating (and Map lookups on it hit its cached hash); a miss builds and caches it.
const INTERN_MAX = 32;
const internStr: string[] = new Array<string>(256).fill('');

/**
 * Decode b[start..start+len) as a string: short ASCII through the intern cache, anything else
 * through TextDecoder (invalid UTF-8 becomes U+FFFD, as in every FlatBuffers reader).
 */
function readString(b: Uint8Array, start: number, len: number): string {
  if (len === 0) return '';
  if (len > INTERN_MAX) return decoder.decode(b.subarray(start, start + len));
  let h = len;
  for (let i = 0; i < len; i++) {
    const c = b[start + i]!;
    if (c >= 0x80) return decoder.decode(b.subarray(start, start + len));
    h = (Math.imul(h, 31) + c) | 0;
  }
  const slot = (h ^ (h >>> 8)) & 255;
  const hit = internStr[slot]!;
  if (hit.length === len) {
    let i = 0;
    while (i < len && hit.charCodeAt(i) === b[start + i]) i++;
    if (i === len) return hit;
  }
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(b[start + i]!);
  internStr[slot] = s;
  return s;
}

// Names of 1 to 8 ASCII bytes (nearly every event name) are also cached by their bytes as two
// words, read straight from the frame's word view by decodeHot: one hash and three integer
// compares instead of readString's byte loop and character compare (~10-30 ns a message).
const shortKey0 = new Int32Array(256);
const shortKey1 = new Int32Array(256);
const shortLen = new Int32Array(256); //  0: an empty entry (no name of length 0 is cached)
const shortStr: string[] = new Array<string>(256).fill('');

/**
 * readString(b, start, len) for 1 <= len <= 8, where `start` = 4 * (q + 10) and `w` is a word view
 * of `b` (decodeHot's frame). Only the name's own bytes are keyed: the rest of the last word
 * (NUL, padding, a client's garbage) is masked off.
 */
function readShortName(b: Uint8Array, w: Uint32Array, q: number, start: number, len: number): string {
  let a0 = w[q + 10]! | 0;
  let a1 = len > 4 ? w[q + 11]! | 0 : 0;
  if (len < 4) a0 &= (1 << (len << 3)) - 1;
  else if (len < 8) a1 &= (1 << ((len - 4) << 3)) - 1;
  if (((a0 | a1) & 0x80808080) !== 0) return readString(b, start, len);
  let h = Math.imul(a0 ^ Math.imul(a1 ^ len, 0x9e3779b1 | 0), 0x85ebca6b | 0);
  h = (h ^ (h >>> 16)) & 255;
  if (shortLen[h] === len && shortKey0[h] === a0 && shortKey1[h] === a1) return shortStr[h]!;
  const s = readString(b, start, len);
  shortKey0[h] = a0;
  shortKey1[h] = a1;
  shortLen[h] = len;
  shortStr[h] = s;
  return s;
}

function toBytes(payload: unknown): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  if (payload === undefined) return EMPTY;
  if (typeof payload === 'string') return encoder.encode(payload);
  // Bytes in another shape: JSON.stringify would turn an ArrayBuffer into "{}".
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  return encoder.encode(JSON.stringify(payload));
}

// Encoded frames of up to POOL_MAX bytes are carved, 8-aligned, out of a shared 64 KiB slab, as
// Node's Buffer.allocUnsafe does: allocating an ArrayBuffer costs ~200 ns whatever its size, a
// view of the slab ~15 ns. Each region is handed out once and written whole (padding included), so
// no frame can see another's bytes; the slab lives as long as any of its frames.
const POOL_SIZE = 64 * 1024;
const POOL_MAX = 4096;
let pool = new ArrayBuffer(POOL_SIZE);
let poolBytes = new Uint8Array(pool);
let poolWords = new Uint32Array(pool);
let poolUsed = 0;

function encodeWire(event: string, eventId: number, ref: number, payload: Uint8Array): Uint8Array {
  const eb = eventLength(event);
  const size = wireFrameSize(eb, payload.length);
  if (size > POOL_MAX) {
    const buf = new ArrayBuffer((size + 3) & ~3);
    const out = new Uint8Array(buf, 0, size);
    writeWireFrameAt(out, new Uint32Array(buf), 0, event, eb, eventId >>> 0, ref >>> 0, payload, 0, payload.length);
    return out;
  }
  if (poolUsed + size > POOL_SIZE) {
    pool = new ArrayBuffer(POOL_SIZE);
    poolBytes = new Uint8Array(pool);
    poolWords = new Uint32Array(pool);
    poolUsed = 0;
  }
  const at = poolUsed;
  poolUsed = (at + size + 7) & ~7;
  writeWireFrameAt(poolBytes, poolWords, at, event, eb, eventId >>> 0, ref >>> 0, payload, 0, payload.length);
  return new Uint8Array(pool, at, size);
}

// Vtable slots of WireFrame (4 + 2 * field id).
const SLOT_EVENT = 4;
const SLOT_EVENT_ID = 6;
const SLOT_REF = 8;
const SLOT_PAYLOAD = 10;

/** Decode a WireFrame from bytes that passed verifyWireFrame. */
function readWire(b: Uint8Array, offset: number, out: DecodedFrame): void {
  const t = offset + i32(b, offset);
  let p = field(b, t, SLOT_EVENT);
  if (p !== 0) {
    const s = p + i32(b, p);
    out.event = readString(b, s + 4, i32(b, s));
  } else {
    out.event = '';
  }
  p = field(b, t, SLOT_EVENT_ID);
  out.eventId = p !== 0 ? i32(b, p) >>> 0 : 0;
  p = field(b, t, SLOT_REF);
  out.ref = p !== 0 ? i32(b, p) >>> 0 : 0;
  p = field(b, t, SLOT_PAYLOAD);
  if (p !== 0) {
    const v = p + i32(b, p);
    out.payload = new Uint8Array(b.buffer, b.byteOffset + v + 4, i32(b, v));
  } else {
    out.payload = EMPTY;
  }
  out.data = out.payload;
}

// The last buffer decodeHot read (the worker's ring, nearly always): its ArrayBuffer, offset and
// words. `bytes.buffer` alone costs ~15 ns on a SharedArrayBuffer view, as much as the view it makes.
let hotBytes: Uint8Array | null = null;
let hotBuffer: ArrayBufferLike = new ArrayBuffer(0);
let hotOffset = 0;
let hotWords: Uint32Array | null = null;

// The layout writeWireFrameAt (encodeFrame, the ringwire client) gives a frame, as words at
// offsets 0..20: root table at 16, vtable [12 bytes, table 20, event @4, event_id @8, ref @12,
// payload @16], soffset 12, event uoffset 16 (its string at 36).
const HOT_VT0 = 12 | (20 << 16);
const HOT_VT1 = 4 | (8 << 16);
const HOT_VT2 = 12 | (16 << 16);

/**
 * Verify and read, in one pass, a frame with the layout above (fields read at fixed positions,
 * no vtable walk); false, with nothing read, for any other frame, which then goes through
 * verifyWireFrame and readWire. Every check verifyTable makes on such a frame is made here
 * (root, vtable and table inside; the event string's length, bytes and NUL inside; the payload's
 * uoffset in [1, 2^31), its length and bytes inside), so a frame read here would pass
 * verifyWireFrame, and the fields are those readWire returns (a unit test compares both paths).
 */
function decodeHot(b: Uint8Array, offset: number, length: number, out: DecodedFrame): boolean {
  if (b !== hotBytes) {
    hotBytes = b;
    hotBuffer = b.buffer;
    hotOffset = b.byteOffset;
    hotWords = (hotOffset & 3) === 0 ? new Uint32Array(hotBuffer, hotOffset, b.byteLength >>> 2) : null;
  }
  const w = hotWords;
  if (w === null || (offset & 3) !== 0 || (offset | 0) !== offset || (length | 0) !== length
    || !(offset >= 0 && length >= 44 && offset + length <= b.length)) return false;
  const q = offset >>> 2;
  if (w[q] !== 16 || w[q + 1] !== HOT_VT0 || w[q + 2] !== HOT_VT1 || w[q + 3] !== HOT_VT2 || w[q + 4] !== 12
    || w[q + 5] !== 16) return false;
  const e = w[q + 9]!; //                      event length (string at 36, bytes at 40)
  if (e > length - 41 || b[offset + 40 + e] !== 0) return false;
  const po = w[q + 8]!; //                     payload uoffset, from 32
  if (po === 0 || po > 0x7fffffff || (po & 3) !== 0 || po > length - 36) return false;
  const plen = w[q + 8 + (po >>> 2)]!;
  if (plen > length - 36 - po) return false;
  out.event = e !== 0 && e <= 8 ? readShortName(b, w, q, offset + 40, e) : readString(b, offset + 40, e);
  out.eventId = w[q + 6]!;
  out.ref = w[q + 7]!;
  out.payload = new Uint8Array(hotBuffer, hotOffset + offset + 36 + po, plen);
  out.data = out.payload;
  return true;
}

export const binaryCodec: Codec = {
  name: 'binary',
  binary: true,
  decode(bytes, offset, length, isBinary, out) {
    if (!isBinary) throw new BadFrameError('bad frame: the binary codec expects binary messages');
    if (decodeHot(bytes, offset, length, out)) return;
    verifyWireFrame(bytes, offset, length);
    readWire(bytes, offset, out);
  },
  encode(event, ref, payload) {
    return encodeWire(event, 0, ref, toBytes(payload));
  },
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const jsonCodec: Codec = {
  name: 'json',
  binary: false,
  decode(bytes, offset, length, _isBinary, out) {
    if (!(offset >= 0 && length >= 0 && offset + length <= bytes.length)) {
      throw new BadFrameError('bad frame: offset/length outside the buffer');
    }
    let v: unknown;
    try {
      v = JSON.parse(fatalDecoder.decode(bytes.subarray(offset, offset + length)));
    } catch {
      throw new BadFrameError('bad frame: not valid UTF-8 JSON');
    }
    if (!isPlainObject(v)) throw new BadFrameError('bad frame: JSON frame must be an object');
    const ref = v.ref;
    let r = 0;
    if (ref !== undefined && ref !== null) {
      if (typeof ref !== 'number' || !Number.isInteger(ref) || ref < 0 || ref > 0xffffffff) {
        throw new BadFrameError('bad frame: "ref" must be an integer between 0 and 2^32-1');
      }
      r = ref;
    }
    // Set before the cmd check: a frame refused for its cmd still has a ref its error reply echoes.
    out.ref = r;
    const cmd = v.cmd;
    if (typeof cmd !== 'string') throw new BadFrameError('bad frame: "cmd" must be a string');
    out.event = cmd;
    out.eventId = 0;
    out.payload = EMPTY;
    out.data = v.data;
  },
  encode(event, ref, payload) {
    let data = payload;
    // Bytes become their UTF-8 text; other typed arrays (Float32Array...) stay JSON values.
    if (payload instanceof Uint8Array || payload instanceof ArrayBuffer || payload instanceof DataView) data = decoder.decode(toBytes(payload));
    return encoder.encode(JSON.stringify({ cmd: event, data, ref }));
  },
};

export const rawCodec: Codec = {
  name: 'raw',
  binary: true,
  decode(bytes, offset, length, _isBinary, out) {
    if (!(offset >= 0 && length >= 0 && offset + length <= bytes.length)) {
      throw new BadFrameError('bad frame: offset/length outside the buffer');
    }
    out.event = '';
    out.eventId = 0;
    out.ref = 0;
    out.payload = new Uint8Array(bytes.buffer, bytes.byteOffset + offset, length);
    out.data = out.payload;
  },
  encode(_event, _ref, payload) {
    return toBytes(payload);
  },
};

/** The codec of that name; throws TypeError naming the option otherwise. */
export function codecByName(name: string): Codec {
  switch (name) {
    case 'binary':
      return binaryCodec;
    case 'json':
      return jsonCodec;
    case 'raw':
      return rawCodec;
    default:
      throw new TypeError(`options.codec must be 'binary', 'json' or 'raw', got ${JSON.stringify(name)}`);
  }
}

/**
 * Encode a binary-codec frame (for clients). A string payload is sent as UTF-8. Frames up to
 * 4 KiB are views of a shared pool (like Buffer.allocUnsafe): send or copy the view itself, never
 * its `.buffer` (and do not transfer that buffer to another thread).
 */
export function encodeFrame(f: { event?: string; eventId?: number; ref?: number; payload?: Uint8Array | string }): Uint8Array {
  // A plain-JS caller's positional call (encodeFrame('ECHO', bytes)) would otherwise encode an
  // empty frame, which the server answers with RW_ERR_UNKNOWN_EVENT: say what is wrong here.
  if (f === null || typeof f !== 'object') throw new TypeError('encodeFrame takes one object { event?, eventId?, ref?, payload? }');
  const p = f.payload;
  const bytes = p === undefined ? EMPTY : typeof p === 'string' ? encoder.encode(p) : p;
  return encodeWire(f.event ?? '', f.eventId ?? 0, f.ref ?? 0, bytes);
}

/** Verify and decode a binary-codec frame (for clients). `payload` is a view into `bytes`. */
export function decodeFrame(bytes: Uint8Array): { event: string; eventId: number; ref: number; payload: Uint8Array } {
  const out = createDecodedFrame();
  verifyWireFrame(bytes, 0, bytes.length);
  readWire(bytes, 0, out);
  return { event: out.event, eventId: out.eventId, ref: out.ref, payload: out.payload };
}
