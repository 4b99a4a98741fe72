import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as flatbuffers from 'flatbuffers';
import { Ring, RingStatus } from '../../src/shared/ring.js';
import { RecordReader, Slot, fb, vectorLength, vectorStart, wireFrameSize, writeMessage, writeSendFrame, writeWireFrameAt } from '../../src/shared/records.js';
import { verifyRecord, verifyWireFrame } from '../../src/shared/verify.js';
import {
  binaryCodec, codecByName, createDecodedFrame, decodeFrame, encodeFrame, jsonCodec, rawCodec,
} from '../../src/shared/wire.js';

const te = new TextEncoder();
const td = new TextDecoder();
const BAD_FRAME = { code: 'RW_ERR_BAD_FRAME', name: 'BadFrameError' };

test('encodeFrame refuses a positional call (plain JS) instead of encoding an empty frame', () => {
  assert.throws(() => encodeFrame('ECHO' as never), { name: 'TypeError', message: /one object/ });
  assert.throws(() => encodeFrame(null as never), { name: 'TypeError' });
  assert.equal(decodeFrame(encodeFrame({})).event, '');
});

test('encodeFrame/decodeFrame round-trip', () => {
  const cases = [
    {},
    { event: 'echo', ref: 1, payload: 'hello' },
    { event: '', eventId: 42, ref: 0, payload: new Uint8Array([0, 255, 1]) },
    { event: 'évènement \u{1F600}', ref: 0xffffffff, payload: 'ünï' },
    { event: 'x'.repeat(100), eventId: 0xffffffff, payload: new Uint8Array(1000).fill(7) },
  ];
  for (const c of cases) {
    const bytes = encodeFrame(c);
    const d = decodeFrame(bytes);
    assert.equal(d.event, c.event ?? '');
    assert.equal(d.eventId, c.eventId ?? 0);
    assert.equal(d.ref, c.ref ?? 0);
    const p = c.payload === undefined ? new Uint8Array(0) : typeof c.payload === 'string' ? te.encode(c.payload) : c.payload;
    assert.deepEqual(d.payload, p);
    if (p.length > 0) assert.equal(d.payload.buffer, bytes.buffer, 'payload is a view, not a copy');
  }
});

test('binary frames interoperate with the generated (Builder) code both ways', () => {
  // Builder-made frame (omits default fields) -> our codec.
  const b = new flatbuffers.Builder(64);
  const ev = b.createString('join');
  const pay = fb.WireFrame.createPayloadVector(b, [1, 2, 3]);
  b.finish(fb.WireFrame.createWireFrame(b, ev, 0, 9, pay));
  const built = b.asUint8Array();
  const d = decodeFrame(built);
  assert.deepEqual({ ...d, payload: [...d.payload] }, { event: 'join', eventId: 0, ref: 9, payload: [1, 2, 3] });
  // A frame with no fields at all.
  const e = new flatbuffers.Builder(16);
  fb.WireFrame.startWireFrame(e);
  e.finish(fb.WireFrame.endWireFrame(e));
  assert.deepEqual(decodeFrame(e.asUint8Array()), { event: '', eventId: 0, ref: 0, payload: new Uint8Array(0) });
  // Our frame -> generated reader.
  const ours = encodeFrame({ event: 'move', eventId: 5, ref: 6, payload: 'xy' });
  const f = fb.WireFrame.getRootAsWireFrame(new flatbuffers.ByteBuffer(ours));
  assert.equal(f.event(), 'move');
  assert.equal(f.eventId(), 5);
  assert.equal(f.ref(), 6);
  assert.equal(td.decode(f.payloadArray()!), 'xy');
});

test('binaryCodec decodes a frame in place inside a larger buffer', () => {
  const frame = encodeFrame({ event: 'e', ref: 3, payload: 'abc' });
  const host = new Uint8Array(frame.length + 100).fill(0xa5);
  host.set(frame, 37);
  const out = createDecodedFrame();
  binaryCodec.decode(host, 37, frame.length, true, out);
  assert.equal(out.event, 'e');
  assert.equal(out.ref, 3);
  assert.equal(td.decode(out.payload), 'abc');
  assert.equal(out.data, out.payload);
  assert.ok(out.payload.byteOffset >= 37 && out.payload.byteOffset + out.payload.length <= 37 + frame.length);
  // One byte short of the frame: the payload no longer fits.
  assert.throws(() => binaryCodec.decode(host, 37, frame.length - 1, true, out), BAD_FRAME);
  // Text message to a binary-codec connection.
  assert.throws(() => binaryCodec.decode(host, 37, frame.length, false, out), BAD_FRAME);
  // Range outside the buffer.
  assert.throws(() => binaryCodec.decode(host, host.length - 4, 8, true, out), BAD_FRAME);
});

test('the worker path: a client frame in a Message record decodes straight from the ring', () => {
  const ring = Ring.create(4096);
  const frame = encodeFrame({ event: 'chat', ref: 77, payload: 'hi' });
  assert.equal(writeMessage(ring, 99, true, frame), RingStatus.OK);
  const off = ring.peek();
  verifyRecord(ring.data, off, ring.peekLength);
  const m = new RecordReader(ring.data).message(off);
  const out = createDecodedFrame();
  binaryCodec.decode(ring.data, vectorStart(m, Slot.MessageData), vectorLength(m, Slot.MessageData), m.binary(), out);
  assert.equal(out.event, 'chat');
  assert.equal(out.ref, 77);
  assert.equal(td.decode(out.payload), 'hi');
  assert.equal(out.payload.buffer, ring.sab);
  ring.skip();
  // And the reply built by writeSendFrame is a frame the client decodes.
  assert.equal(writeSendFrame(ring, 99, out.event, 0, out.ref, out.payload), RingStatus.OK);
  const off2 = ring.peek();
  const s = new RecordReader(ring.data).send(off2);
  const start = vectorStart(s, Slot.SendData);
  const sent = ring.data.slice(start, start + vectorLength(s, Slot.SendData));
  verifyWireFrame(sent, 0, sent.length);
  const back = decodeFrame(sent);
  assert.deepEqual([back.event, back.ref, td.decode(back.payload)], ['chat', 77, 'hi']);
});

test('binaryCodec.encode accepts bytes, strings and JSON values', () => {
  const d1 = decodeFrame(binaryCodec.encode('a', 1, new Uint8Array([9])));
  assert.deepEqual([...d1.payload], [9]);
  const d2 = decodeFrame(binaryCodec.encode('a', 2, 'text'));
  assert.equal(td.decode(d2.payload), 'text');
  const d3 = decodeFrame(binaryCodec.encode('a', 3, { x: [1, 2] }));
  assert.deepEqual(JSON.parse(td.decode(d3.payload)), { x: [1, 2] });
  assert.equal(d3.ref, 3);
  assert.equal(decodeFrame(binaryCodec.encode('a', 0, undefined)).payload.length, 0);
  assert.equal(binaryCodec.binary, true);
});

test('jsonCodec decodes {cmd, data, ref} and rejects everything else with RW_ERR_BAD_FRAME', () => {
  const out = createDecodedFrame();
  const dec = (s: string): void => {
    const b = te.encode(s);
    jsonCodec.decode(b, 0, b.length, false, out);
  };
  dec('{"cmd":"chat.send","data":{"text":"hi"},"ref":5}');
  assert.deepEqual([out.event, out.data, out.ref, out.eventId], ['chat.send', { text: 'hi' }, 5, 0]);
  dec('{"cmd":"ping"}');
  assert.deepEqual([out.event, out.data, out.ref], ['ping', undefined, 0]);
  dec('{"cmd":"x","ref":null,"data":[1]}');
  assert.deepEqual([out.event, out.data, out.ref], ['x', [1], 0]);
  // In place, at an offset, from binary messages too.
  const host = new Uint8Array(64).fill(0x20);
  const msg = te.encode('{"cmd":"é","data":1}');
  host.set(msg, 10);
  jsonCodec.decode(host, 10, msg.length, true, out);
  assert.deepEqual([out.event, out.data], ['é', 1]);

  const bad = [
    '', 'nope', '{"cmd":"x"', '[]', 'null', '42', '"cmd"', '{}', '{"cmd":1}', '{"cmd":null}',
    '{"cmd":"x","ref":1.5}', '{"cmd":"x","ref":-1}', '{"cmd":"x","ref":"1"}', '{"cmd":"x","ref":4294967296}',
  ];
  for (const s of bad) assert.throws(() => dec(s), BAD_FRAME, s);
  const invalidUtf8 = new Uint8Array([0x7b, 0x22, 0x63, 0x6d, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]);
  assert.throws(() => jsonCodec.decode(invalidUtf8, 0, invalidUtf8.length, false, out), BAD_FRAME);
  assert.throws(() => jsonCodec.decode(host, 60, 10, false, out), BAD_FRAME);
});

test('jsonCodec.encode produces {cmd, data, ref} text', () => {
  assert.equal(jsonCodec.binary, false);
  assert.deepEqual(JSON.parse(td.decode(jsonCodec.encode('ev', 3, { a: 1 }))), { cmd: 'ev', data: { a: 1 }, ref: 3 });
  assert.deepEqual(JSON.parse(td.decode(jsonCodec.encode('ev', 0, 'str'))), { cmd: 'ev', data: 'str', ref: 0 });
  // Bytes are sent as their UTF-8 text.
  assert.deepEqual(JSON.parse(td.decode(jsonCodec.encode('ev', 1, te.encode('raw')))), { cmd: 'ev', data: 'raw', ref: 1 });
  // Round trip through decode.
  const b = jsonCodec.encode('round', 8, [1, 'two']);
  const out = createDecodedFrame();
  jsonCodec.decode(b, 0, b.length, false, out);
  assert.deepEqual([out.event, out.ref, out.data], ['round', 8, [1, 'two']]);
});

test('rawCodec: the whole message is the payload', () => {
  const host = te.encode('..payload..');
  const out = createDecodedFrame();
  rawCodec.decode(host, 2, 7, true, out);
  assert.deepEqual([out.event, out.eventId, out.ref, td.decode(out.payload)], ['', 0, 0, 'payload']);
  assert.equal(out.payload.buffer, host.buffer);
  assert.equal(out.data, out.payload);
  assert.throws(() => rawCodec.decode(host, 8, 7, true, out), BAD_FRAME);
  const bytes = new Uint8Array([1, 2]);
  assert.equal(rawCodec.encode('ignored', 5, bytes), bytes);
  assert.equal(td.decode(rawCodec.encode('', 0, 'abc')), 'abc');
  assert.equal(td.decode(rawCodec.encode('', 0, { a: 1 })), '{"a":1}');
});

test('codecByName', () => {
  assert.equal(codecByName('binary'), binaryCodec);
  assert.equal(codecByName('json'), jsonCodec);
  assert.equal(codecByName('raw'), rawCodec);
  assert.throws(() => codecByName('xml'), TypeError);
});

test('verifyWireFrame rejects hand-made malicious frames', () => {
  const good = encodeFrame({ event: 'abc', ref: 1, payload: 'xyz' });
  const mutate = (f: (d: DataView) => void): Uint8Array => {
    const c = good.slice();
    f(new DataView(c.buffer));
    return c;
  };
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['short', good.subarray(0, 7)],
    ['root past end', mutate((d) => d.setUint32(0, good.length))],
    ['root negative', mutate((d) => d.setInt32(0, -4))],
    ['root in the last 3 bytes', mutate((d) => d.setUint32(0, good.length - 3))],
    ['vtable before frame', mutate((d) => d.setInt32(16, 1000))],
    ['vtable odd size', mutate((d) => d.setUint16(4, 11))],
    ['vtable too big', mutate((d) => d.setUint16(4, 2000))],
    ['field offset past end', mutate((d) => d.setUint16(8, 4000))],
    ['field offset negative', mutate((d) => d.setInt16(8, -8))],
    ['string offset past end', mutate((d) => d.setUint32(20, 1 << 20))],
    ['string offset zero', mutate((d) => d.setUint32(20, 0))],
    ['string offset backwards', mutate((d) => d.setInt32(20, -20))],
    ['string length past end', mutate((d) => d.setUint32(36, 200))],
    ['string length negative', mutate((d) => d.setInt32(36, -1))],
    ['string without NUL', mutate((d) => d.setUint8(43, 0x41))],
    ['payload length past end', mutate((d) => d.setUint32(44, 4))],
    ['payload length huge', mutate((d) => d.setUint32(44, 0x7fffffff))],
  ];
  for (const [name, bytes] of cases) {
    assert.throws(() => verifyWireFrame(bytes, 0, bytes.length), BAD_FRAME, name);
    assert.throws(() => decodeFrame(bytes), BAD_FRAME, name);
  }
  verifyWireFrame(good, 0, good.length);
});

test('pooled encodes never overlap or alias one another', () => {
  const frames: Uint8Array[] = [];
  // Enough to roll over the 64 KiB pool several times, with sizes around the 4 KiB pool limit.
  for (let i = 0; i < 400; i++) {
    const size = (i * 733) % 5000;
    frames.push(encodeFrame({ event: `e${i}`, ref: i, payload: new Uint8Array(size).fill(i & 255) }));
  }
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i]!;
    const d = decodeFrame(f);
    assert.equal(d.event, `e${i}`);
    assert.equal(d.ref, i);
    assert.equal(d.payload.length, (i * 733) % 5000);
    assert.ok(d.payload.every((x) => x === (i & 255)), `frame ${i} was overwritten`);
    assert.equal(f.byteOffset % 8, 0);
  }
});

test('a frame whose event name repeats the last one written is laid out exactly as a fresh one', () => {
  // writeWireFrameAt keeps the last event name's words (bytes, NUL, padding) and copies them into
  // the next frame with that name: each frame must read back its own name, with zero padding, over
  // a buffer full of garbage, whatever name came before (same, longer, shorter, non-ASCII, uncached).
  const names = ['ECHO', 'ECHO', 'A', 'ECHO', '', '', 'évè \u{1F600}', 'évè \u{1F600}', 'x'.repeat(59), 'x'.repeat(59),
    'x'.repeat(60), 'x'.repeat(60), 'ECHO', 'ECHP', 'ECH', 'ECHO\u0000', 'ECHO', 'y'.repeat(200), 'ECHO'];
  const buf = new ArrayBuffer(512);
  const bytes = new Uint8Array(buf);
  const words = new Uint32Array(buf);
  for (const [i, name] of names.entries()) {
    bytes.fill(0xa5);
    const payload = new Uint8Array([i, 1, 2]);
    const eb = te.encode(name).length;
    writeWireFrameAt(bytes, words, 8, name, eb, 0, i, payload, 0, payload.length);
    const size = wireFrameSize(eb, payload.length);
    const frame = bytes.subarray(8, 8 + size);
    verifyWireFrame(frame, 0, frame.length);
    const f = fb.WireFrame.getRootAsWireFrame(new flatbuffers.ByteBuffer(frame));
    assert.equal(f.event(), name, `frame ${i}`);
    assert.equal(f.ref(), i);
    assert.deepEqual([...f.payloadArray()!], [i, 1, 2]);
    // From the NUL after the name to the payload's length word: zeros, nothing of an earlier frame.
    const lenAt = size - payload.length - 4;
    assert.ok(frame.subarray(40 + eb, lenAt).every((x) => x === 0), `padding of frame ${i}`);
    // And the same bytes as encodeFrame, the client's writer.
    assert.deepEqual([...frame], [...encodeFrame({ event: name, ref: i, payload })], `frame ${i} vs encodeFrame`);
  }
});

test('binaryCodec.decode reads short event names by their bytes only, whatever follows them', () => {
  // Names of 1 to 8 ASCII bytes are cached by their bytes as two words: what follows the name (its
  // NUL, then padding a client may fill with anything) must not change what is read, names that
  // differ in one byte or in length must not meet, and more names than the cache holds still decode.
  const sab = new SharedArrayBuffer(4096);
  const ring = new Uint8Array(sab, 64, 2048);
  const out = createDecodedFrame();
  const names: string[] = [];
  for (let len = 1; len <= 9; len++) for (let i = 0; i < 70; i++) names.push(String.fromCharCode(...Array.from({ length: len }, (_, k) => 33 + ((i * 7 + k * 13) % 90))));
  names.push('a\u0000', 'a', 'a\u0000b', 'a\u0000c', 'é', 'éa', 'ab\u007f');
  for (let round = 0; round < 2; round++) {
    for (const [i, name] of names.entries()) {
      const frame = encodeFrame({ event: name, ref: i, payload: new Uint8Array([1, 2, 3]) });
      ring.fill(0);
      ring.set(frame, 8);
      const eb = te.encode(name).length;
      // Garbage between the NUL and the payload's length word (the reader never looks at it).
      const lenAt = 8 + frame.length - 3 - 4;
      for (let p = 8 + 40 + eb + 1; p < lenAt; p++) ring[p] = (p * 37 + i) | 0x80;
      binaryCodec.decode(ring, 8, frame.length, true, out);
      assert.equal(out.event, name, `name ${i} (${JSON.stringify(name)}), round ${round}`);
      assert.equal(out.ref, i);
      assert.deepEqual([...out.payload], [1, 2, 3]);
    }
  }
});
