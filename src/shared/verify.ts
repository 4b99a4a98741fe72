/**
 * Bounds verification of FlatBuffers before any generated reader touches them.
 *
 * The FlatBuffers JS runtime has no verifier: it follows whatever offsets a buffer holds. A client
 * frame sits in a shared ring next to other connections' records, so an unchecked offset in a
 * crafted frame would make the worker read (and perhaps echo back) someone else's bytes. Every
 * client WireFrame therefore passes verifyWireFrame() before it is read; verification is a
 * security property, and fuzz tests hold it to "every read after a pass stays inside the frame".
 *
 * What is checked, mirroring exactly what the generated readers dereference (and the C++
 * verifier's rules, minus alignment, which the JS readers do not need):
 *   - root uoffset: 4 <= root <= length - 4 (the table's soffset lies inside the frame);
 *   - vtable = table - soffset (signed): vtable + 2 inside; vtable size (read as int16, as
 *     ByteBuffer.__offset does) even, >= 4, whole vtable inside; table inline size inside;
 *   - each schema field whose slot is inside the vtable and whose offset (int16) is non-zero:
 *     offset >= 4 and the field's bytes inside the frame;
 *   - each offset field (string/vector): uoffset in [1, 2^31) and its target's length prefix inside;
 *     length >= 0; the elements inside; strings also end with a NUL inside the frame;
 *     vectors of strings: every element verified as a string.
 * Unknown record kinds are rejected. Nothing is allocated unless verification fails.
 *
 * Limits of the guarantee: a reader may still be handed an index past a vector's length by its
 * caller (loop to xLength()), and `SendMany.handlesArray()` needs absolute 8-alignment (see
 * records.ts); neither is a property of the bytes.
 */

import { BadFrameError, BadRecordError } from './errors.js';
import { RecordKind } from './records.js';

// Field types of the schema, one byte per field id.
const U8 = 1; //  bool, ubyte
const U16 = 2; // ushort
const U32 = 4; // uint, int
const F64 = 8; // double
const STR = 16;
const VEC_U8 = 17;
const VEC_F64 = 18;
const VEC_STR = 19;

/** Field types by field id, per table (must match schema/*.fbs; a unit test checks against the generated code). */
const WIRE_FRAME = Uint8Array.of(STR, U32, U32, VEC_U8);
const KIND_FIELDS: (Uint8Array | undefined)[] = [];
KIND_FIELDS[RecordKind.Upgrade] = Uint8Array.of(F64, U16, STR, STR, STR, VEC_STR, VEC_STR, VEC_STR);
KIND_FIELDS[RecordKind.Open] = Uint8Array.of(F64);
KIND_FIELDS[RecordKind.Message] = Uint8Array.of(F64, U8, VEC_U8);
KIND_FIELDS[RecordKind.Shed] = Uint8Array.of(F64, U8, VEC_U8);
KIND_FIELDS[RecordKind.Close] = Uint8Array.of(F64, U32, VEC_U8);
KIND_FIELDS[RecordKind.Drain] = Uint8Array.of(F64, U32);
KIND_FIELDS[RecordKind.Send] = Uint8Array.of(F64, U8, VEC_U8);
KIND_FIELDS[RecordKind.SendMany] = Uint8Array.of(VEC_F64, U8, VEC_U8);
KIND_FIELDS[RecordKind.Publish] = Uint8Array.of(STR, U8, VEC_U8, F64);
KIND_FIELDS[RecordKind.Subscribe] = Uint8Array.of(F64, STR);
KIND_FIELDS[RecordKind.Unsubscribe] = Uint8Array.of(F64, STR);
KIND_FIELDS[RecordKind.CloseConn] = Uint8Array.of(F64, U32, STR);
KIND_FIELDS[RecordKind.Accept] = Uint8Array.of(F64, VEC_U8);
KIND_FIELDS[RecordKind.Reject] = Uint8Array.of(F64, U16, VEC_STR, VEC_STR, VEC_U8);
KIND_FIELDS[RecordKind.Notice] = Uint8Array.of(U16, U32, U32, F64, VEC_U8);
KIND_FIELDS[RecordKind.Request] = Uint8Array.of(U16, U32, F64, STR, VEC_F64, U8, VEC_U8);

/** Exposed for the schema consistency test only. */
export const _schemaFields = { WIRE_FRAME, KIND_FIELDS, U8, U16, U32, F64, STR, VEC_U8, VEC_F64, VEC_STR } as const;

// Failure reasons (index into MESSAGES); 0 = ok.
const E_RANGE = 1;
const E_ROOT = 2;
const E_VTABLE = 3;
const E_VTABLE_SIZE = 4;
const E_TABLE_SIZE = 5;
const E_FIELD = 6;
const E_UOFFSET = 7;
const E_LENGTH = 8;
const E_NUL = 9;
const MESSAGES = [
  'ok',
  'offset/length outside the buffer or too short',
  'root offset outside the frame',
  'vtable outside the frame',
  'bad vtable size',
  'table inline size outside the frame',
  'field outside the frame',
  'bad offset to string/vector',
  'string/vector length outside the frame',
  'string not NUL-terminated inside the frame',
];

/** Position of the failing check, for the error message. */
let failPos = 0;

function i32(b: Uint8Array, p: number): number {
  return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
}
function i16(b: Uint8Array, p: number): number {
  return ((b[p]! | (b[p + 1]! << 8)) << 16) >> 16;
}

/** A string whose uoffset is at `p` (4 bytes already known inside). Returns 0 or an error. */
function checkString(b: Uint8Array, p: number, end: number): number {
  const o = i32(b, p);
  if (o <= 0) return E_UOFFSET; // uoffset is unsigned and never 0; >= 2^31 reads negative in JS
  const s = p + o;
  if (s + 4 > end) return E_LENGTH;
  const len = i32(b, s);
  if (len < 0 || s + 5 + len > end) return E_LENGTH; // 4 length + bytes + NUL
  if (b[s + 4 + len] !== 0) return E_NUL;
  return 0;
}

/** Verify the FlatBuffer at b[start..end) against `fields`. Returns 0 or an error code. */
function verifyTable(b: Uint8Array, start: number, end: number, fields: Uint8Array): number {
  if (end - start < 8) return E_RANGE;
  const root = i32(b, start);
  if (root < 4 || root > end - start - 4) {
    failPos = start;
    return E_ROOT;
  }
  const t = start + root;
  const vt = t - i32(b, t);
  if (vt < start || vt + 4 > end) {
    failPos = t;
    return E_VTABLE;
  }
  const vsize = i16(b, vt);
  if (vsize < 4 || (vsize & 1) !== 0 || vt + vsize > end) {
    failPos = vt;
    return E_VTABLE_SIZE;
  }
  const tsize = b[vt + 2]! | (b[vt + 3]! << 8);
  if (t + tsize > end) {
    failPos = vt;
    return E_TABLE_SIZE;
  }
  const n = fields.length;
  for (let i = 0; i < n; i++) {
    const slot = 4 + 2 * i;
    if (slot >= vsize) break; // absent: the reader returns the default without reading
    const fo = i16(b, vt + slot);
    if (fo === 0) continue;
    const p = t + fo;
    failPos = p;
    const type = fields[i]!;
    if (fo < 4) return E_FIELD; // would overlap the soffset, or point before the table
    if (type < STR) {
      if (p + type > end) return E_FIELD;
      continue;
    }
    if (p + 4 > end) return E_FIELD;
    if (type === STR) {
      const e = checkString(b, p, end);
      if (e !== 0) return e;
      continue;
    }
    const o = i32(b, p);
    if (o <= 0) return E_UOFFSET;
    const v = p + o;
    if (v + 4 > end) return E_LENGTH;
    const len = i32(b, v);
    failPos = v;
    if (len < 0) return E_LENGTH;
    if (type === VEC_U8) {
      if (v + 4 + len > end) return E_LENGTH;
    } else if (type === VEC_F64) {
      if (v + 4 + len * 8 > end) return E_LENGTH;
    } else {
      // VEC_STR: every element is a uoffset to a string.
      if (v + 4 + len * 4 > end) return E_LENGTH;
      for (let j = 0, ep = v + 4; j < len; j++, ep += 4) {
        failPos = ep;
        const e = checkString(b, ep, end);
        if (e !== 0) return e;
      }
    }
  }
  return 0;
}

function rangeOk(bytes: Uint8Array, offset: number, length: number): boolean {
  return Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0 &&
    offset + length <= bytes.length;
}

/**
 * Verify that bytes[offset..offset+length) is a WireFrame every generated-reader access of which
 * stays inside that range. Throws BadFrameError (RW_ERR_BAD_FRAME).
 */
export function verifyWireFrame(bytes: Uint8Array, offset: number, length: number): void {
  if (!rangeOk(bytes, offset, length)) throw new BadFrameError('bad frame: ' + MESSAGES[E_RANGE]);
  const e = verifyTable(bytes, offset, offset + length, WIRE_FRAME);
  if (e !== 0) throw new BadFrameError(`bad frame: ${MESSAGES[e]} (at byte ${failPos - offset})`);
}

/**
 * Verify the ring record payload bytes[offset..offset+length) ([u32 kind][FlatBuffer]) and
 * return its kind. Throws BadRecordError (RW_ERR_BAD_RECORD), also for an unknown kind. Does not
 * look inside Message/Send `data` (its format is the connection codec's business).
 */
export function verifyRecord(bytes: Uint8Array, offset: number, length: number): number {
  if (!rangeOk(bytes, offset, length) || length < 4) {
    throw new BadRecordError('bad record: ' + MESSAGES[E_RANGE]);
  }
  const kind = i32(bytes, offset) >>> 0;
  const fields = kind < KIND_FIELDS.length ? KIND_FIELDS[kind] : undefined;
  if (fields === undefined) throw new BadRecordError(`bad record: unknown kind ${kind}`);
  const e = verifyTable(bytes, offset + 4, offset + length, fields);
  if (e !== 0) {
    throw new BadRecordError(`bad record (kind ${kind}): ${MESSAGES[e]} (at byte ${failPos - offset})`);
  }
  return kind;
}

/**
 * verifyRecord without the exception: true when the record passes (same checks), false when
 * verifyRecord would throw. For the I/O thread's command loop, which counts and skips a bad
 * record rather than unwinding (nothing allocated either way).
 */
export function recordOk(bytes: Uint8Array, offset: number, length: number): boolean {
  if (!rangeOk(bytes, offset, length) || length < 4) return false;
  const kind = i32(bytes, offset) >>> 0;
  const fields = kind < KIND_FIELDS.length ? KIND_FIELDS[kind] : undefined;
  return fields !== undefined && verifyTable(bytes, offset + 4, offset + length, fields) === 0;
}
