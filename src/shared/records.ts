/**
 * Ring records: FlatBuffers tables (schema/records.fbs) written straight into a ring and read in place.
 *
 * Shared leaf module (I/O thread and workers). A record payload, as reserved in a Ring, is
 *
 *   +-------------+------------------------------------------------+
 *   | u32 LE kind | FlatBuffer whose root table is that kind's      |
 *   |             | (b = payload offset + 4 is the buffer's start)  |
 *   +-------------+------------------------------------------------+
 *
 * Writers reserve the exact size, write, commit, and return a RingStatusCode (FULL leaves the ring
 * untouched). The hot ones lay the FlatBuffer out by hand with fixed vtables; no Builder, no
 * intermediate objects. Every layout below is a valid FlatBuffer (alignment relative to `b`, as the
 * format defines it) and the unit tests read each one back through the flatc-generated readers.
 * The cold writers (Upgrade, Reject) use one reused flatbuffers.Builder and copy.
 *
 * Hand layouts (offsets relative to b; `vt` lists vtable bytes, tblsize, then one u16 per field id):
 *
 *   Open        0 root=12 | 4 vt[6,12, h=4] pad | 12 soffset=8 | 16 f64 handle | =24
 *   Drain       0 root=12 | 4 vt[8,16, h=4,buf=12] | 12 soffset=8 | 16 f64 handle | 24 u32 buffered | =28
 *   Message,    0 root=16 | 4 vt[10,17, h=8,bin=16,data=4] pad | 16 soffset=12 | 20 uoff data=20 |
 *   Shed, Send  24 f64 handle | 32 u8 binary | pad | 40 u32 len | 44 bytes | =44+n
 *   Close       as Message with 32 i32 code (tblsize 20) and data = reason (=44+n)
 *   Subscribe,  0 root=12 | 4 vt[8,16, h=4,topic=12] | 12 soffset=8 | 16 f64 handle | 24 uoff topic=4 |
 *   Unsubscribe 28 u32 len | 32 utf8 | 32+t NUL | =33+t
 *   CloseConn   0 root=16 | 4 vt[10,20, h=8,code=16,reason=4] pad | 16 soffset=12 | 20 uoff reason=16 |
 *               24 f64 handle | 32 i32 code | 36 u32 len | 40 utf8 | NUL | =41+r
 *   Accept      0 root=12 | 4 vt[8,16, h=4,ud=12] | 12 soffset=8 | 16 f64 handle | 24 uoff ud=4 |
 *               28 u32 len | 32 bytes | =32+n            (user_data is always present, maybe empty)
 *   SendMany    0 root=16 | 4 vt[10,13, hs=4,bin=12,data=8] pad | 16 soffset=12 | 20 uoff handles=16 |
 *               24 uoff data=16+8c | 28 u8 binary | pad | 36 u32 c | 40 f64[c] | 40+8c u32 n |
 *               44+8c bytes | =44+8c+n
 *   Publish     0 root=16 | 4 vt[12,21, topic=4,bin=20,data=16,excl=8] | 16 soffset=12 |
 *               20 uoff topic=20 | 24 f64 exclude | 32 uoff data=A-32 | 36 u8 binary | pad |
 *               40 u32 t | 44 utf8 | NUL | pad → A=align8(45+t) | A u32 n | A+4 bytes | =A+4+n
 *   WireFrame   0 root=16 | 4 vt[12,20, ev=4,id=8,ref=12,pay=16] | 16 soffset=12 | 20 uoff event=16 |
 *   (wire.fbs)  24 u32 event_id | 28 u32 ref | 32 uoff payload=A-32 | 36 u32 e | 40 utf8 | NUL |
 *               pad → A = first 4 mod 8 >= 41+e | A u32 p | A+4 bytes | =A+4+p
 *   Send frame  a Send whose data (at 44) is a WireFrame
 *
 * Payload bytes are placed 8-aligned in absolute terms (b is 4 mod 8 in a ring, see below; a
 * WireFrame's payload is 8-aligned relative to the frame, and frames in Message/Send data start
 * 8-aligned). That is not for the readers: V8 copies into or out of a SharedArrayBuffer byte by
 * byte when source and destination are misaligned relative to each other (measured: 512 B in
 * ~150 ns instead of ~25 ns), so aligned payloads keep the echo path's ring-to-ring copy a memcpy.
 *
 * Ring payloads are 8-aligned, so `b` is 4 mod 8 in absolute terms: a double that is 8-aligned
 * inside the buffer is not 8-aligned in the ring. The JS readers do not care, except the
 * generated `SendMany.handlesArray()`, which builds a Float64Array and throws RangeError on such
 * an offset: read handles with `handles(i)` / `handlesLength()`.
 *
 * Readers: RecordReader returns reused generated table objects positioned in place. Vector
 * accessors `xArray()` of the generated code return views into the ring, not copies; strings are
 * decoded on each call. Everything is valid only until the record is released: copy what you keep.
 * Records that did not come from this process's own writers must pass verifyRecord() first
 * (src/shared/verify.ts); client frames inside Message.data always go through the codec, which verifies.
 */

import * as flatbuffers from 'flatbuffers';
import * as fb from './generated/index.js';
import { RingStatus, type RingStatusCode } from './ring.js';

export { fb };

/** Record kinds: the u32 that precedes each FlatBuffer in a ring record. */
export const RecordKind = {
  // inbound events (I/O thread -> worker)
  Upgrade: 1,
  Open: 2,
  Message: 3,
  Close: 4,
  Drain: 5,
  Notice: 6,
  /**
   * A client message over its connection's rate limit (rateLimit.onExceed 'shed'): a Message
   * table, which the worker answers with an RW_ERR_RATE_LIMITED error reply in order, running
   * no hook or handler.
   */
  Shed: 7,
  // outbound commands (worker -> I/O thread)
  Send: 16,
  SendMany: 17,
  Publish: 18,
  Subscribe: 19,
  Unsubscribe: 20,
  CloseConn: 21,
  Accept: 22,
  Reject: 23,
  Request: 24,
} as const;

/** Request ops (worker -> I/O thread, cold path: sessions, uids, rooms, paged sends). */
export const RequestOp = {
  /** text = uid, data = JSON { onDuplicate, code }; replies. */
  Bind: 1,
  Unbind: 2,
  /** text = uid, data = encoded message. */
  SendToUid: 3,
  /** text = room, data = JSON meta; replies with the presence snapshot. */
  Join: 4,
  /** text = room. */
  Leave: 5,
  /**
   * text = topic; replies { subscribers, members }. With data = JSON { limit, after } (ctx.room(topic,
   * options)), one page: { subscribers, members, next, total } (src/shared/paging.ts).
   */
  RoomInfo: 6,
  /** Paged send to every connection of module `handle` (-1: all modules) except `handles`; data = message. */
  SendAll: 7,
  /** `handle`'s connection record (server.connection()); replies with it or null. */
  ConnInfo: 8,
  /**
   * Replies with this node's rooms: [{ room, members }] (server.listRooms()). With data = JSON
   * { limit, after } (ctx.listRooms(options)), one page: { rooms, next, total }.
   */
  RoomList: 9,
} as const;

/** Notice ops (I/O thread -> worker). */
export const NoticeOp = {
  /** Answer to Request `id`: status 0 = ok (data = JSON result), else data = JSON { code, message }. */
  Reply: 1,
  /** The connection's socket dropped; its session waits for a resume until the grace period ends. */
  Detach: 2,
  /** The session resumed on a new socket; data = JSON { tempHandle, recovered, replayed }. */
  Resume: 3,
} as const;
export type RecordKindCode = (typeof RecordKind)[keyof typeof RecordKind];

/** The part of a Ring the writers need (the real Ring in ./ring.ts satisfies it). */
export interface RecordRing {
  readonly data: Uint8Array;
  reserve(length: number): number;
  commit(length?: number): void;
}

/**
 * Vtable slots (byte offset inside the vtable) of the byte-vector fields, for
 * vectorStart/vectorLength. Slot = 4 + 2 * field id, as in the generated `__offset` calls.
 */
export const Slot = {
  MessageData: 8,
  SendData: 8,
  CloseReason: 8,
  SendManyData: 8,
  PublishData: 8,
  AcceptUserData: 6,
  RejectBody: 12,
  WireFramePayload: 10,
} as const;

// ------------------------------------------------------------------------------------------
// stores
// ------------------------------------------------------------------------------------------
//
// Every fixed field of the hand layouts is a 32-bit word at a 4-aligned position of the buffer,
// and ring payloads are 8-aligned, so the writers store whole words through a Uint32Array over
// the ring's data (one store instead of four byte stores with shifts; measured ~15-20 ns less per
// record). A double goes through a float64 scratch as two words (it is 4 mod 8 in the ring, so no
// Float64Array over the ring can hold it). Strings and payload bytes go through the Uint8Array.

const f64 = new Float64Array(1);
const f64w = new Uint32Array(f64.buffer);
if (new Uint16Array(new Uint8Array([1, 0]).buffer)[0] !== 1) {
  // FlatBuffers is little-endian, and so are the Uint32Array stores below only on such a host.
  throw new Error('ringwire records need a little-endian host');
}

// The last data area written to (the common case: one ring per thread), then a WeakMap.
let lastData: Uint8Array | null = null;
let lastWords: Uint32Array = new Uint32Array(0);
const wordsCache = new WeakMap<Uint8Array, Uint32Array>();

/** A Uint32Array over `d` (cached); throws RangeError if `d` is not 4-aligned. */
function wordsOf(d: Uint8Array): Uint32Array {
  if (d === lastData) return lastWords;
  let w = wordsCache.get(d);
  if (w === undefined) {
    if ((d.byteOffset & 3) !== 0) throw new RangeError('ring data must be 4-byte aligned');
    w = new Uint32Array(d.buffer, d.byteOffset, d.byteLength >>> 2);
    wordsCache.set(d, w);
  }
  lastData = d;
  lastWords = w;
  return w;
}

/** Checks a reserve() result; the writers need 4-aligned records (Ring gives 8-aligned ones). */
function aligned(r: number): number {
  if ((r & 3) !== 0) throw new RangeError(`ring.reserve() returned ${r}, records must be 4-byte aligned`);
  return r;
}

function wf64(w: Uint32Array, q: number, v: number): void {
  f64[0] = v;
  w[q] = f64w[0]!;
  w[q + 1] = f64w[1]!;
}

function copyBytes(d: Uint8Array, p: number, src: Uint8Array, off: number, len: number): void {
  // TypedArray.set costs ~10 ns whatever the size (when source and destination are equally
  // aligned), a byte loop ~1 ns a byte, and subarray() allocates a view.
  if (off === 0 && len === src.length) {
    if (len <= 8) for (let i = 0; i < len; i++) d[p + i] = src[i]!;
    else d.set(src, p);
  } else if (len <= 16) {
    for (let i = 0; i < len; i++) d[p + i] = src[off + i]!;
  } else {
    d.set(src.subarray(off, off + len), p);
  }
}

function fail(off: number): RingStatusCode {
  return off === -1 ? RingStatus.FULL : RingStatus.TOO_LARGE;
}

// ------------------------------------------------------------------------------------------
// UTF-8 without allocation
// ------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

/**
 * Bytes of `s` in UTF-8, exactly as TextEncoder writes it (a lone surrogate becomes U+FFFD,
 * 3 bytes). Equals s.length for ASCII.
 */
export function utf8Length(s: string): number {
  const n = s.length;
  let i = 0;
  while (i < n && s.charCodeAt(i) < 0x80) i++;
  if (i === n) return n;
  let len = i;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) len += 1;
    else if (c < 0x800) len += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const c2 = s.charCodeAt(i + 1);
      if (c2 >= 0xdc00 && c2 <= 0xdfff) {
        len += 4;
        i++;
      } else {
        len += 3;
      }
    } else len += 3;
  }
  return len;
}

/** Write `s` (whose utf8Length is `byteLen`) at d[p..p+byteLen). */
export function writeUtf8(d: Uint8Array, p: number, s: string, byteLen: number): void {
  const n = s.length;
  if (byteLen === n) {
    for (let i = 0; i < n; i++) d[p + i] = s.charCodeAt(i); // ASCII fast path
  } else {
    encoder.encodeInto(s, d.subarray(p, p + byteLen));
  }
}

/** Write string `s` (utf8Length `len`) at byte p, then zeros (NUL + padding) up to `end`. */
function writeStringBytes(d: Uint8Array, p: number, s: string, len: number, end: number): void {
  writeUtf8(d, p, s, len);
  for (let i = p + len; i < end; i++) d[i] = 0;
}

// ------------------------------------------------------------------------------------------
// WireFrame (schema/wire.fbs) in place: shared by writeSendFrame and the binary codec
// ------------------------------------------------------------------------------------------

/** Offset of a WireFrame's payload length word: the first position >= 41 + eventBytes that is 4 mod 8. */
function framePayloadAt(eventBytes: number): number {
  return ((eventBytes + 44) & ~7) + 4;
}

/** Size of a WireFrame buffer with an event of `eventBytes` UTF-8 bytes and `payloadLength` bytes. */
export function wireFrameSize(eventBytes: number, payloadLength: number): number {
  return framePayloadAt(eventBytes) + 4 + payloadLength;
}

// The event name of the last frame written, as that frame holds it: its UTF-8 length and the
// words from its first byte to the payload (bytes, NUL, zero padding). A reply nearly always
// carries the event of the message it answers, from a small vocabulary: the next frame with the
// same name copies these few words instead of measuring and writing the string again (utf8Length
// and the byte loops were ~10 % of a worker's time per echoed message). Names of up to
// EVENT_CACHE_BYTES - 5 bytes are kept.
const EVENT_CACHE_BYTES = 64;
let cachedEvent = '';
let cachedEventBytes = 0; //       '' : its one word (NUL + padding) is the zero cachedWords start with
const cachedWords = new Uint32Array(EVENT_CACHE_BYTES >>> 2);

/** utf8Length(event), from the cache when it is the last event written. */
export function eventLength(event: string): number {
  return event === cachedEvent ? cachedEventBytes : utf8Length(event);
}

/**
 * Lay out a WireFrame at d[b..b+wireFrameSize(eventBytes, payLen)); `w` is a Uint32Array over
 * the same memory as `d`. `b` must be 4-aligned; 8-aligned also aligns the payload.
 */
export function writeWireFrameAt(
  d: Uint8Array, w: Uint32Array, b: number, event: string, eventBytes: number, eventId: number, ref: number,
  payload: Uint8Array, payOff: number, payLen: number,
): void {
  const a = framePayloadAt(eventBytes);
  const q = b >>> 2;
  w[q] = 16; //                       root table at 16
  w[q + 1] = 12 | (20 << 16); //      vtable: 12 bytes, table 20 bytes
  w[q + 2] = 4 | (8 << 16); //        event @4, event_id @8
  w[q + 3] = 12 | (16 << 16); //      ref @12, payload @16
  w[q + 4] = 12; //                   soffset: vtable at table - 12
  w[q + 5] = 16; //                   event -> 36
  w[q + 6] = eventId;
  w[q + 7] = ref;
  w[q + 8] = a - 32; //               payload -> a
  w[q + 9] = eventBytes;
  const n = (a - 40) >>> 2; //        words of the string, its NUL and padding
  if (event === cachedEvent && eventBytes === cachedEventBytes) {
    for (let i = 0; i < n; i++) w[q + 10 + i] = cachedWords[i]!;
  } else {
    writeStringBytes(d, b + 40, event, eventBytes, b + a);
    if (n <= cachedWords.length) {
      for (let i = 0; i < n; i++) cachedWords[i] = w[q + 10 + i]!;
      cachedEvent = event;
      cachedEventBytes = eventBytes;
    }
  }
  w[(b + a) >>> 2] = payLen;
  copyBytes(d, b + a + 4, payload, payOff, payLen);
}

// ------------------------------------------------------------------------------------------
// hot writers (hand layout; q = word index of the record, q + 1 = word index of b)
// ------------------------------------------------------------------------------------------

/** vtable words of the Message/Send hot layout (RecordReader.hbd recognises records by them). */
const HBD_VT0 = 10 | (17 << 16);
const HBD_VT1 = 8 | (16 << 16);

/** Message and Send share one layout (handle, binary, data). */
function writeHandleBinaryData(
  ring: RecordRing, kind: number, handle: number, binary: boolean, src: Uint8Array, off: number, len: number,
): RingStatusCode {
  const r = ring.reserve(48 + len);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = kind;
  w[q + 1] = 16; //                   root table at 16
  w[q + 2] = HBD_VT0; //              vtable: 10 bytes, table 17 bytes
  w[q + 3] = HBD_VT1; //              handle @8, binary @16
  w[q + 4] = 4; //                    data @4, 2 bytes padding
  w[q + 5] = 12; //                   soffset
  w[q + 6] = 20; //                   data -> 40
  wf64(w, q + 7, handle); //          b + 24
  w[q + 9] = binary ? 1 : 0; //       b + 32: binary + 3 bytes padding
  w[q + 10] = 0; //                   padding: the bytes land 8-aligned in the ring
  w[q + 11] = len; //                 b + 40
  copyBytes(d, r + 48, src, off, len);
  ring.commit();
  return RingStatus.OK;
}

/** Inbound client message; `src[srcOff..srcOff+srcLen)` is the frame exactly as received. */
export function writeMessage(
  ring: RecordRing, handle: number, binary: boolean, src: Uint8Array, srcOff = 0, srcLen = src.length - srcOff,
): RingStatusCode {
  return writeHandleBinaryData(ring, RecordKind.Message, handle, binary, src, srcOff, srcLen);
}

/** A message shed by the rate limiter (same table as Message, see RecordKind.Shed). */
export function writeShed(
  ring: RecordRing, handle: number, binary: boolean, src: Uint8Array, srcOff = 0, srcLen = src.length - srcOff,
): RingStatusCode {
  return writeHandleBinaryData(ring, RecordKind.Shed, handle, binary, src, srcOff, srcLen);
}

/** Send already-encoded bytes to one connection. */
export function writeSend(
  ring: RecordRing, handle: number, binary: boolean, src: Uint8Array, srcOff = 0, srcLen = src.length - srcOff,
): RingStatusCode {
  return writeHandleBinaryData(ring, RecordKind.Send, handle, binary, src, srcOff, srcLen);
}

/**
 * Send a binary-codec WireFrame to one connection, building the frame inside the Send record
 * (the echo hot path: one copy of the payload, from wherever it is into the outbound ring).
 */
export function writeSendFrame(
  ring: RecordRing, handle: number, event: string, eventId: number, ref: number,
  payload: Uint8Array, payOff = 0, payLen = payload.length - payOff,
): RingStatusCode {
  const eb = eventLength(event);
  const fs = wireFrameSize(eb, payLen);
  const r = ring.reserve(48 + fs);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.Send;
  w[q + 1] = 16;
  w[q + 2] = HBD_VT0;
  w[q + 3] = HBD_VT1;
  w[q + 4] = 4;
  w[q + 5] = 12;
  w[q + 6] = 20; //                   data -> 40
  wf64(w, q + 7, handle);
  w[q + 9] = 1; //                    binary
  w[q + 10] = 0;
  w[q + 11] = fs;
  writeWireFrameAt(d, w, r + 48, event, eb, eventId, ref, payload, payOff, payLen);
  ring.commit();
  return RingStatus.OK;
}

export function writeOpen(ring: RecordRing, handle: number): RingStatusCode {
  const r = ring.reserve(28);
  if (r < 0) return fail(r);
  const w = wordsOf(ring.data);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.Open;
  w[q + 1] = 12; //                   root table at 12
  w[q + 2] = 6 | (12 << 16); //       vtable: 6 bytes, table 12 bytes
  w[q + 3] = 4; //                    handle @4, 2 bytes padding
  w[q + 4] = 8; //                    soffset
  wf64(w, q + 5, handle); //          b + 16
  ring.commit();
  return RingStatus.OK;
}

/** The connection closed; `reason` holds the close reason bytes as received. */
export function writeClose(ring: RecordRing, handle: number, code: number, reason: Uint8Array): RingStatusCode {
  const len = reason.length;
  const r = ring.reserve(48 + len);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.Close;
  w[q + 1] = 16;
  w[q + 2] = 10 | (20 << 16); //      vtable: 10 bytes, table 20 bytes
  w[q + 3] = 8 | (16 << 16); //       handle @8, code @16
  w[q + 4] = 4; //                    reason @4
  w[q + 5] = 12;
  w[q + 6] = 20; //                   reason -> 40
  wf64(w, q + 7, handle);
  w[q + 9] = code;
  w[q + 10] = 0;
  w[q + 11] = len;
  copyBytes(d, r + 48, reason, 0, len);
  ring.commit();
  return RingStatus.OK;
}

export function writeDrain(ring: RecordRing, handle: number, buffered: number): RingStatusCode {
  const r = ring.reserve(32);
  if (r < 0) return fail(r);
  const w = wordsOf(ring.data);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.Drain;
  w[q + 1] = 12;
  w[q + 2] = 8 | (16 << 16); //       vtable: 8 bytes, table 16 bytes
  w[q + 3] = 4 | (12 << 16); //       handle @4, buffered @12
  w[q + 4] = 8;
  wf64(w, q + 5, handle); //          b + 16
  w[q + 7] = buffered; //             b + 24
  ring.commit();
  return RingStatus.OK;
}

/** Send the same bytes to `handles[0..count)`. */
export function writeSendMany(
  ring: RecordRing, handles: ArrayLike<number>, count: number, binary: boolean,
  src: Uint8Array, srcOff = 0, srcLen = src.length - srcOff,
): RingStatusCode {
  const r = ring.reserve(48 + 8 * count + srcLen);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.SendMany;
  w[q + 1] = 16;
  w[q + 2] = 10 | (13 << 16); //      vtable: 10 bytes, table 13 bytes
  w[q + 3] = 4 | (12 << 16); //       handles @4, binary @12
  w[q + 4] = 8; //                    data @8
  w[q + 5] = 12;
  w[q + 6] = 16; //                   handles -> 36
  w[q + 7] = 16 + 8 * count; //       data -> 40 + 8c
  w[q + 8] = binary ? 1 : 0; //       binary + padding
  w[q + 9] = 0; //                    padding
  w[q + 10] = count; //               b + 36
  let k = q + 11; //                  b + 40: the doubles
  for (let i = 0; i < count; i++, k += 2) wf64(w, k, handles[i]!);
  w[k] = srcLen;
  copyBytes(d, (k << 2) + 4, src, srcOff, srcLen);
  ring.commit();
  return RingStatus.OK;
}

/** Publish bytes to a topic; `exclude` (0 = nobody) does not receive them. */
export function writePublish(
  ring: RecordRing, topic: string, binary: boolean, src: Uint8Array,
  srcOff = 0, srcLen = src.length - srcOff, exclude = 0,
): RingStatusCode {
  const t = utf8Length(topic);
  const a = (45 + t + 7) & ~7; //     data bytes at a + 4: 8-aligned in the ring
  const r = ring.reserve(a + 8 + srcLen);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  const b = r + 4;
  w[q] = RecordKind.Publish;
  w[q + 1] = 16;
  w[q + 2] = 12 | (21 << 16); //      vtable: 12 bytes, table 21 bytes
  w[q + 3] = 4 | (20 << 16); //       topic @4, binary @20
  w[q + 4] = 16 | (8 << 16); //       data @16, exclude @8
  w[q + 5] = 12;
  w[q + 6] = 20; //                   topic -> 40
  wf64(w, q + 7, exclude); //         b + 24
  w[q + 9] = a - 32; //               data -> a
  w[q + 10] = binary ? 1 : 0; //      b + 36
  w[q + 11] = t; //                   b + 40
  writeStringBytes(d, b + 44, topic, t, b + a);
  w[(b + a) >>> 2] = srcLen;
  copyBytes(d, b + a + 4, src, srcOff, srcLen);
  ring.commit();
  return RingStatus.OK;
}

function writeHandleTopic(ring: RecordRing, kind: number, handle: number, topic: string): RingStatusCode {
  const t = utf8Length(topic);
  const r = ring.reserve(37 + t);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = kind;
  w[q + 1] = 12;
  w[q + 2] = 8 | (16 << 16); //       vtable: 8 bytes, table 16 bytes
  w[q + 3] = 4 | (12 << 16); //       handle @4, topic @12
  w[q + 4] = 8;
  wf64(w, q + 5, handle); //          b + 16
  w[q + 7] = 4; //                    topic -> 28
  w[q + 8] = t;
  writeStringBytes(d, r + 36, topic, t, r + 37 + t);
  ring.commit();
  return RingStatus.OK;
}

export function writeSubscribe(ring: RecordRing, handle: number, topic: string): RingStatusCode {
  return writeHandleTopic(ring, RecordKind.Subscribe, handle, topic);
}

export function writeUnsubscribe(ring: RecordRing, handle: number, topic: string): RingStatusCode {
  return writeHandleTopic(ring, RecordKind.Unsubscribe, handle, topic);
}

/** Close a connection with a WebSocket close code and reason (UTF-8, at most 123 bytes on the wire). */
export function writeCloseConn(ring: RecordRing, handle: number, code: number, reason: string): RingStatusCode {
  const t = utf8Length(reason);
  const r = ring.reserve(45 + t);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.CloseConn;
  w[q + 1] = 16;
  w[q + 2] = 10 | (20 << 16); //      vtable: 10 bytes, table 20 bytes
  w[q + 3] = 8 | (16 << 16); //       handle @8, code @16
  w[q + 4] = 4; //                    reason @4
  w[q + 5] = 12;
  w[q + 6] = 16; //                   reason -> 36
  wf64(w, q + 7, handle);
  w[q + 9] = code;
  w[q + 10] = t; //                   b + 36
  writeStringBytes(d, r + 44, reason, t, r + 45 + t);
  ring.commit();
  return RingStatus.OK;
}

const EMPTY = new Uint8Array(0);

/** Accept an upgrade; `userData` (default empty) is always present in the record. */
export function writeAccept(ring: RecordRing, handle: number, userData: Uint8Array = EMPTY): RingStatusCode {
  const len = userData.length;
  const r = ring.reserve(36 + len);
  if (r < 0) return fail(r);
  const d = ring.data;
  const w = wordsOf(d);
  const q = aligned(r) >>> 2;
  w[q] = RecordKind.Accept;
  w[q + 1] = 12;
  w[q + 2] = 8 | (16 << 16);
  w[q + 3] = 4 | (12 << 16); //       handle @4, user_data @12
  w[q + 4] = 8;
  wf64(w, q + 5, handle);
  w[q + 7] = 4; //                    user_data -> 28
  w[q + 8] = len;
  copyBytes(d, r + 36, userData, 0, len);
  ring.commit();
  return RingStatus.OK;
}

// ------------------------------------------------------------------------------------------
// cold writers (one reused Builder, then one copy)
// ------------------------------------------------------------------------------------------

const builder = new flatbuffers.Builder(1024);

function stringVector(strings: readonly string[]): flatbuffers.Offset {
  const n = strings.length;
  const offs = new Array<flatbuffers.Offset>(n);
  for (let i = 0; i < n; i++) offs[i] = builder.createString(strings[i]!);
  builder.startVector(4, n, 4);
  for (let i = n - 1; i >= 0; i--) builder.addOffset(offs[i]!);
  return builder.endVector();
}

function copyBuilt(ring: RecordRing, kind: number): RingStatusCode {
  const bytes = builder.asUint8Array();
  const r = ring.reserve(4 + bytes.length);
  if (r < 0) return fail(r);
  wordsOf(ring.data)[aligned(r) >>> 2] = kind;
  ring.data.set(bytes, r + 4);
  ring.commit();
  return RingStatus.OK;
}

export interface UpgradeRecord {
  handle: number;
  module: number;
  url: string;
  query: string;
  remoteAddress: string;
  headerNames: readonly string[];
  headerValues: readonly string[];
  params: readonly string[];
}

/** An upgrade request (cold path: Builder + copy). Throws RangeError if the header arrays differ in length. */
export function writeUpgrade(ring: RecordRing, u: UpgradeRecord): RingStatusCode {
  if (u.headerNames.length !== u.headerValues.length) {
    throw new RangeError('writeUpgrade: headerNames and headerValues must have the same length');
  }
  builder.clear();
  const url = builder.createString(u.url);
  const query = builder.createString(u.query);
  const remote = builder.createString(u.remoteAddress);
  const names = stringVector(u.headerNames);
  const values = stringVector(u.headerValues);
  const params = stringVector(u.params);
  fb.Upgrade.startUpgrade(builder);
  fb.Upgrade.addHandle(builder, u.handle);
  fb.Upgrade.addModule(builder, u.module);
  fb.Upgrade.addUrl(builder, url);
  fb.Upgrade.addQuery(builder, query);
  fb.Upgrade.addRemoteAddress(builder, remote);
  fb.Upgrade.addHeaderNames(builder, names);
  fb.Upgrade.addHeaderValues(builder, values);
  fb.Upgrade.addParams(builder, params);
  builder.finish(fb.Upgrade.endUpgrade(builder));
  return copyBuilt(ring, RecordKind.Upgrade);
}

/** Reject an upgrade with an HTTP response (cold path). Throws RangeError if the header arrays differ in length. */
export function writeReject(
  ring: RecordRing, handle: number, status: number,
  headerNames: readonly string[], headerValues: readonly string[], body: Uint8Array,
): RingStatusCode {
  if (headerNames.length !== headerValues.length) {
    throw new RangeError('writeReject: headerNames and headerValues must have the same length');
  }
  builder.clear();
  const names = stringVector(headerNames);
  const values = stringVector(headerValues);
  const bodyOff = builder.createByteVector(body);
  fb.Reject.startReject(builder);
  fb.Reject.addHandle(builder, handle);
  fb.Reject.addStatus(builder, status);
  fb.Reject.addHeaderNames(builder, names);
  fb.Reject.addHeaderValues(builder, values);
  fb.Reject.addBody(builder, bodyOff);
  builder.finish(fb.Reject.endReject(builder));
  return copyBuilt(ring, RecordKind.Reject);
}

export interface RequestFields {
  op: number;
  id: number;
  handle: number;
  text: string;
  handles: ArrayLike<number> | null;
  binary: boolean;
  data: Uint8Array | null;
}

/** A session/room command (cold path: Builder + copy). */
export function writeRequest(ring: RecordRing, q: RequestFields): RingStatusCode {
  builder.clear();
  const text = builder.createString(q.text);
  let handles = 0;
  if (q.handles !== null) {
    const n = q.handles.length;
    builder.startVector(8, n, 8);
    for (let i = n - 1; i >= 0; i--) builder.addFloat64(q.handles[i]!);
    handles = builder.endVector();
  }
  const data = q.data === null ? 0 : builder.createByteVector(q.data);
  fb.Request.startRequest(builder);
  fb.Request.addOp(builder, q.op);
  fb.Request.addId(builder, q.id);
  fb.Request.addHandle(builder, q.handle);
  fb.Request.addText(builder, text);
  if (handles !== 0) fb.Request.addHandles(builder, handles);
  fb.Request.addBinary(builder, q.binary);
  if (data !== 0) fb.Request.addData(builder, data);
  builder.finish(fb.Request.endRequest(builder));
  return copyBuilt(ring, RecordKind.Request);
}

/** A Notice to a worker (cold path). `data` is UTF-8 JSON. */
export function writeNotice(ring: RecordRing, op: number, id: number, status: number, handle: number, data: Uint8Array): RingStatusCode {
  builder.clear();
  const d = builder.createByteVector(data);
  fb.Notice.startNotice(builder);
  fb.Notice.addOp(builder, op);
  fb.Notice.addId(builder, id);
  fb.Notice.addStatus(builder, status);
  fb.Notice.addHandle(builder, handle);
  fb.Notice.addData(builder, d);
  builder.finish(fb.Notice.endNotice(builder));
  return copyBuilt(ring, RecordKind.Notice);
}

// ------------------------------------------------------------------------------------------
// readers
// ------------------------------------------------------------------------------------------

/** The generated tables' common shape (bb + bb_pos). */
export interface TableView {
  bb: flatbuffers.ByteBuffer | null;
  bb_pos: number;
}

/**
 * Index in the underlying bytes of the first element of the vector field at vtable `slot`
 * (see Slot), or -1 when the field is absent. With vectorLength, lets a caller hand
 * (data, start, length) to a codec without allocating a view.
 */
export function vectorStart(t: TableView, slot: number): number {
  const bb = t.bb!;
  const o = bb.__offset(t.bb_pos, slot);
  return o ? bb.__vector(t.bb_pos + o) : -1;
}

/** Element count of the vector field at vtable `slot` (0 when absent). */
export function vectorLength(t: TableView, slot: number): number {
  const bb = t.bb!;
  const o = bb.__offset(t.bb_pos, slot);
  return o ? bb.__vector_len(t.bb_pos + o) : 0;
}

/**
 * Reads records in place. One instance per ring data area: it wraps the whole `data` in one
 * ByteBuffer and hands out one reused table object per kind, positioned at `offset + 4`
 * (FlatBuffers offsets are relative, so a buffer can start anywhere). A table object is valid
 * until the next call for the same kind; its fields until the record is released.
 */
export class RecordReader {
  readonly data: Uint8Array;
  readonly bb: flatbuffers.ByteBuffer;
  private readonly _upgrade = new fb.Upgrade();
  private readonly _open = new fb.Open();
  private readonly _message = new fb.Message();
  private readonly _shed = new fb.Shed();
  private readonly _close = new fb.Close();
  private readonly _drain = new fb.Drain();
  private readonly _send = new fb.Send();
  private readonly _sendMany = new fb.SendMany();
  private readonly _publish = new fb.Publish();
  private readonly _subscribe = new fb.Subscribe();
  private readonly _unsubscribe = new fb.Unsubscribe();
  private readonly _closeConn = new fb.CloseConn();
  private readonly _accept = new fb.Accept();
  private readonly _reject = new fb.Reject();
  private readonly _frame = new fb.WireFrame();
  private readonly _request = new fb.Request();
  private readonly _notice = new fb.Notice();

  /** Words over `data` for the fixed-layout fast path; null when `data` is not 4-aligned. */
  private readonly words: Uint32Array | null;
  /** Fields of the last Message/Send record read by `hbd()`: bytes are `data[start, start + length)`. */
  hbdHandle = 0;
  hbdBinary = false;
  hbdStart = 0;
  hbdLength = 0;

  constructor(data: Uint8Array) {
    this.data = data;
    this.bb = new flatbuffers.ByteBuffer(data);
    this.words = (data.byteOffset & 3) === 0 ? new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2) : null;
  }

  /**
   * Reads the handle, binary flag and data span of the Message, Shed or Send record at `offset` into
   * hbdHandle/hbdBinary/hbdStart/hbdLength, allocating nothing. Records laid out by the hot
   * writers (writeHandleBinaryData, writeSendFrame) are recognised by their six layout words and
   * read at fixed positions (no vtable walk, no view); any other valid layout of the same table
   * goes through the generated accessors, so the result never depends on who wrote the record.
   */
  hbd(offset: number, send: boolean): void {
    if (this.hbdFixed(offset, Infinity)) return;
    const m = send ? this.send(offset) : this.kind(offset) === RecordKind.Shed ? this.shed(offset) : this.message(offset);
    this.hbdHandle = m.handle();
    this.hbdBinary = m.binary();
    const a = m.dataArray();
    this.hbdStart = a === null ? 0 : a.byteOffset - this.data.byteOffset;
    this.hbdLength = a === null ? 0 : a.length;
  }

  /**
   * hbd() for a record of `length` bytes that may not come from this process's writers (the I/O
   * thread reading a worker's commands): reads it and returns true only when it has the hot
   * writers' layout with its data inside the record. False (nothing read): some other layout,
   * which must pass verifyRecord() before hbd() may read it, or a data length past the record.
   */
  hbdHot(offset: number, length: number): boolean {
    return length >= 48 && this.hbdFixed(offset, length - 48);
  }

  /** The hot writers' layout (six layout words) with at most `maxData` data bytes: read it and return true. */
  private hbdFixed(offset: number, maxData: number): boolean {
    const w = this.words;
    const q = offset >>> 2;
    if (w === null || (offset & 3) !== 0 || w[q + 1] !== 16 || w[q + 2] !== HBD_VT0 || w[q + 3] !== HBD_VT1
      || w[q + 4] !== 4 || w[q + 5] !== 12 || w[q + 6] !== 20 || w[q + 11]! > maxData) return false;
    f64w[0] = w[q + 7]!;
    f64w[1] = w[q + 8]!;
    this.hbdHandle = f64[0]!;
    this.hbdBinary = (w[q + 9]! & 0xff) !== 0;
    this.hbdStart = offset + 48;
    this.hbdLength = w[q + 11]!;
    return true;
  }

  /** The record's kind (first u32 of the payload at `offset`). */
  kind(offset: number): number {
    const d = this.data;
    return (d[offset]! | (d[offset + 1]! << 8) | (d[offset + 2]! << 16) | (d[offset + 3]! << 24)) >>> 0;
  }

  /** Root table position of the FlatBuffer that starts at `b`. */
  private root(b: number): number {
    return b + this.bb.readInt32(b);
  }

  upgrade(offset: number): fb.Upgrade { return this._upgrade.__init(this.root(offset + 4), this.bb); }
  open(offset: number): fb.Open { return this._open.__init(this.root(offset + 4), this.bb); }
  message(offset: number): fb.Message { return this._message.__init(this.root(offset + 4), this.bb); }
  shed(offset: number): fb.Shed { return this._shed.__init(this.root(offset + 4), this.bb); }
  close(offset: number): fb.Close { return this._close.__init(this.root(offset + 4), this.bb); }
  drain(offset: number): fb.Drain { return this._drain.__init(this.root(offset + 4), this.bb); }
  send(offset: number): fb.Send { return this._send.__init(this.root(offset + 4), this.bb); }
  sendMany(offset: number): fb.SendMany { return this._sendMany.__init(this.root(offset + 4), this.bb); }
  publish(offset: number): fb.Publish { return this._publish.__init(this.root(offset + 4), this.bb); }
  subscribe(offset: number): fb.Subscribe { return this._subscribe.__init(this.root(offset + 4), this.bb); }
  unsubscribe(offset: number): fb.Unsubscribe { return this._unsubscribe.__init(this.root(offset + 4), this.bb); }
  closeConn(offset: number): fb.CloseConn { return this._closeConn.__init(this.root(offset + 4), this.bb); }
  accept(offset: number): fb.Accept { return this._accept.__init(this.root(offset + 4), this.bb); }
  reject(offset: number): fb.Reject { return this._reject.__init(this.root(offset + 4), this.bb); }
  request(offset: number): fb.Request { return this._request.__init(this.root(offset + 4), this.bb); }
  notice(offset: number): fb.Notice { return this._notice.__init(this.root(offset + 4), this.bb); }

  /**
   * A WireFrame buffer starting at `start` (e.g. vectorStart(send, Slot.SendData)). Not a
   * record: no kind prefix. Client frames must be verified first (verifyWireFrame).
   */
  wireFrame(start: number): fb.WireFrame { return this._frame.__init(this.root(start), this.bb); }
}
