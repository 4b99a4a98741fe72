/**
 * Minimal RFC 6455 client-side framing for the load generator: pre-built masked frames out,
 * an incremental parser for (unmasked) server frames in. No permessage-deflate, no extensions.
 *
 * Server frame header (RFC 6455 §5.2), all the parser accepts:
 *
 *   byte 0: FIN(1) RSV(3)=0 opcode(4)       byte 1: MASK(1)=0 len7(7)
 *   len7 = 126 -> 2-byte big-endian length follows; 127 -> 8-byte length (< 2^53 here)
 *   then the payload. Control frames (close 0x8, ping 0x9, pong 0xA) have FIN=1, len <= 125,
 *   and may arrive between the fragments of a data message.
 */
import { createHash, randomBytes } from 'node:crypto';

export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Bytes of one masked client frame with `payloadLength` payload bytes. */
export function maskedFrameLength(payloadLength: number): number {
  const ext = payloadLength < 126 ? 0 : payloadLength < 65536 ? 2 : 8;
  return 2 + ext + 4 + payloadLength;
}

/**
 * Write one masked client frame (FIN set) into `out` at `offset`; returns the offset after it.
 * The mask key is 4 bytes; the payload is XORed with it cyclically from payload byte 0.
 */
export function writeMaskedFrame(out: Uint8Array, offset: number, opcode: number,
  payload: Uint8Array, maskKey: Uint8Array): number {
  const n = payload.length;
  let o = offset;
  out[o++] = 0x80 | (opcode & 0x0f);
  if (n < 126) {
    out[o++] = 0x80 | n;
  } else if (n < 65536) {
    out[o++] = 0x80 | 126;
    out[o++] = n >>> 8;
    out[o++] = n & 0xff;
  } else {
    out[o++] = 0x80 | 127;
    const hi = Math.floor(n / 2 ** 32);
    const lo = n >>> 0;
    out[o++] = hi >>> 24; out[o++] = (hi >>> 16) & 0xff; out[o++] = (hi >>> 8) & 0xff; out[o++] = hi & 0xff;
    out[o++] = lo >>> 24; out[o++] = (lo >>> 16) & 0xff; out[o++] = (lo >>> 8) & 0xff; out[o++] = lo & 0xff;
  }
  const k0 = maskKey[0]!, k1 = maskKey[1]!, k2 = maskKey[2]!, k3 = maskKey[3]!;
  out[o++] = k0; out[o++] = k1; out[o++] = k2; out[o++] = k3;
  for (let i = 0; i < n; i++) {
    const k = (i & 3) === 0 ? k0 : (i & 3) === 1 ? k1 : (i & 3) === 2 ? k2 : k3;
    out[o++] = payload[i]! ^ k;
  }
  return o;
}

/** One masked frame as a fresh Buffer. */
export function buildMaskedFrame(opcode: number, payload: Uint8Array, maskKey: Uint8Array = randomBytes(4)): Buffer {
  const out = Buffer.allocUnsafe(maskedFrameLength(payload.length));
  writeMaskedFrame(out, 0, opcode, payload, maskKey);
  return out;
}

/** `count` copies of the same masked frame back to back: a pipelining window built once. */
export function buildFrameWindow(opcode: number, payload: Uint8Array, maskKey: Uint8Array, count: number): Buffer {
  const one = maskedFrameLength(payload.length);
  const out = Buffer.allocUnsafe(one * count);
  writeMaskedFrame(out, 0, opcode, payload, maskKey);
  for (let i = 1; i < count; i++) out.copy(out, i * one, 0, one);
  return out;
}

/** A masked close frame carrying `code`. */
export function buildCloseFrame(code: number, maskKey: Uint8Array = randomBytes(4)): Buffer {
  return buildMaskedFrame(Opcode.CLOSE, Uint8Array.of(code >>> 8, code & 0xff), maskKey);
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 upgrade

export function newWebSocketKey(): string {
  return randomBytes(16).toString('base64');
}

export function expectedAccept(key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

export function buildUpgradeRequest(hostHeader: string, path: string, key: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 'latin1');
}

export type UpgradeResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'ok'; readonly headerEnd: number }
  | { readonly kind: 'error'; readonly reason: string };

const INCOMPLETE: UpgradeResult = { kind: 'incomplete' };
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
export const MAX_UPGRADE_RESPONSE = 16 * 1024;

/**
 * Feed one read of connection `id`'s upgrade response: appends to `bufs[id]`, checks it, and
 * clears `bufs[id]` / `accepts[id]` once it is complete (ok or error); `buf` is the whole response
 * read so far (frame bytes may follow the headers). The two load clients share it.
 */
export function feedUpgradeResponse(bufs: (Buffer | null)[], accepts: (string | null)[], id: number, chunk: Buffer):
  { r: UpgradeResult; buf: Buffer } {
  const prev = bufs[id];
  const buf = prev === null || prev === undefined ? chunk : Buffer.concat([prev, chunk]);
  const r = checkUpgradeResponse(buf, accepts[id]!);
  if (r.kind === 'incomplete') {
    bufs[id] = buf;
  } else {
    bufs[id] = null;
    accepts[id] = null;
  }
  return { r, buf };
}

/**
 * Check an accumulated upgrade response: status 101 and the right Sec-WebSocket-Accept.
 * `headerEnd` is where frame bytes (if any arrived in the same read) start.
 */
export function checkUpgradeResponse(buf: Buffer, accept: string): UpgradeResult {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) {
    return buf.length > MAX_UPGRADE_RESPONSE ? { kind: 'error', reason: 'upgrade:headers-too-large' } : INCOMPLETE;
  }
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
  if (status === null) return { kind: 'error', reason: 'upgrade:bad-status-line' };
  if (status[1] !== '101') return { kind: 'error', reason: `upgrade:status-${status[1]}` };
  let got: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'sec-websocket-accept') {
      got = line.slice(colon + 1).trim();
    }
  }
  if (got !== accept) return { kind: 'error', reason: 'upgrade:bad-accept' };
  return { kind: 'ok', headerEnd: end + 4 };
}

// ---------------------------------------------------------------------------------------------
// Incremental server-frame parser

/** Receives parser events; `conn` is the id given to the parser (no closure per connection). */
export interface FrameSink {
  /** A complete data message (FIN seen). `payload` is non-null only when the parser captures. */
  onMessage(conn: number, opcode: number, length: number, payload: Buffer | null): void;
  onPing(conn: number, payload: Buffer): void;
  onPong(conn: number): void;
  /** Close frame; `code` is 1005 when the frame carried none. */
  onClose(conn: number, code: number): void;
  onProtocolError(conn: number, reason: string): void;
}

const S_HEADER = 0;
const S_PAYLOAD = 1;
const S_FAILED = 2;

/**
 * Incremental parser for unmasked server frames, fed arbitrary chunk boundaries. Data payloads
 * are skipped (only their length is counted) unless `capture` is set (tests); control payloads
 * (<= 125 bytes) are always collected. The chunk is not retained after `push` returns, so the
 * caller may reuse its read buffer.
 */
export class FrameParser {
  private state = S_HEADER;
  private readonly header = new Uint8Array(14);
  private headerHave = 0;
  private headerNeed = 2;
  private opcode = 0;
  private fin = false;
  private remaining = 0;
  /** Opcode of the data message being assembled from fragments (0 = none). */
  private messageOpcode = 0;
  private messageLength = 0;
  private readonly control = Buffer.alloc(125);
  private controlHave = 0;
  private parts: Buffer[] | null = null;

  constructor(private readonly sink: FrameSink, readonly conn: number, private readonly capture = false) {}

  get failed(): boolean {
    return this.state === S_FAILED;
  }

  /** Consume bytes [start, end) of `chunk`. */
  push(chunk: Uint8Array, start = 0, end = chunk.length): void {
    let i = start;
    while (i < end) {
      if (this.state === S_HEADER) {
        const h = this.header;
        while (this.headerHave < this.headerNeed && i < end) h[this.headerHave++] = chunk[i++]!;
        if (this.headerHave < this.headerNeed) return;
        if (this.headerNeed === 2) {
          const b0 = h[0]!, b1 = h[1]!;
          if ((b0 & 0x70) !== 0) return this.fail('frame:rsv-bits');
          if ((b1 & 0x80) !== 0) return this.fail('frame:masked-server-frame');
          const len7 = b1 & 0x7f;
          if (len7 >= 126) {
            this.headerNeed = len7 === 126 ? 4 : 10;
            continue;
          }
          this.remaining = len7;
        } else if (this.headerNeed === 4) {
          this.remaining = (h[2]! << 8) | h[3]!;
        } else {
          const hi = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
          if (hi >= 2 ** 21) return this.fail('frame:length-too-large');
          this.remaining = hi * 2 ** 32 + ((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!;
        }
        if (!this.beginFrame(h[0]!)) return;
        if (this.remaining === 0) {
          this.endFrame();
          continue;
        }
        this.state = S_PAYLOAD;
      } else if (this.state === S_PAYLOAD) {
        const take = Math.min(this.remaining, end - i);
        if (this.opcode >= 0x8) {
          this.control.set(chunk.subarray(i, i + take), this.controlHave);
          this.controlHave += take;
        } else if (this.parts !== null) {
          this.parts.push(Buffer.from(chunk.subarray(i, i + take)));
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) this.endFrame();
      } else {
        return;
      }
    }
  }

  private beginFrame(b0: number): boolean {
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    this.opcode = opcode;
    this.fin = fin;
    if (opcode >= 0x8) {
      if (opcode !== Opcode.CLOSE && opcode !== Opcode.PING && opcode !== Opcode.PONG) {
        this.fail('frame:bad-opcode');
        return false;
      }
      if (!fin || this.remaining > 125) {
        this.fail('frame:bad-control-frame');
        return false;
      }
      this.controlHave = 0;
      return true;
    }
    if (opcode === Opcode.CONTINUATION) {
      if (this.messageOpcode === 0) {
        this.fail('frame:unexpected-continuation');
        return false;
      }
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.messageOpcode !== 0) {
        this.fail('frame:expected-continuation');
        return false;
      }
      this.messageOpcode = opcode;
      this.messageLength = 0;
      if (this.capture) this.parts = [];
    } else {
      this.fail('frame:bad-opcode');
      return false;
    }
    this.messageLength += this.remaining;
    return true;
  }

  private endFrame(): void {
    this.state = S_HEADER;
    this.headerHave = 0;
    this.headerNeed = 2;
    const op = this.opcode;
    if (op < 0x8) {
      if (!this.fin) return;
      const msgOp = this.messageOpcode;
      this.messageOpcode = 0;
      let payload: Buffer | null = null;
      if (this.parts !== null) {
        payload = Buffer.concat(this.parts);
        this.parts = null;
      }
      this.sink.onMessage(this.conn, msgOp, this.messageLength, payload);
      return;
    }
    if (op === Opcode.PING) {
      this.sink.onPing(this.conn, Buffer.from(this.control.subarray(0, this.controlHave)));
    } else if (op === Opcode.PONG) {
      this.sink.onPong(this.conn);
    } else {
      if (this.controlHave === 1) return this.fail('frame:bad-close-payload');
      const code = this.controlHave >= 2 ? (this.control[0]! << 8) | this.control[1]! : 1005;
      this.sink.onClose(this.conn, code);
    }
  }

  private fail(reason: string): void {
    this.state = S_FAILED;
    this.sink.onProtocolError(this.conn, reason);
  }
}
