/**
 * Paged room lists and member lists: `ctx.listRooms({ limit, after })`, `ctx.room(topic, { limit, after })`
 * (workers) and `server.listRooms()` / `server.roomMembers()` with the same options (I/O thread).
 *
 * Shared leaf module. A worker's answer travels as one Notice record, which holds at most about half
 * the ring (512 KiB by default): an unpaged list of every room, or of a huge room's members, can
 * outgrow it. A page is keyset-paged (a cursor, not an offset): entries are ordered by a key that
 * never changes while the entry exists (a room's name; a member's node, then handle), and `next` is
 * the key of the page's last entry. So an entry present during a whole walk is listed exactly once,
 * whatever is added or removed meanwhile; an unchanged set is listed exactly, in order.
 *
 * A worker's page is also cut to fit its ring, so it may hold fewer than `limit` entries with more to
 * come: only `next === null` ends a walk. It always holds at least one entry when any remains (an
 * empty page with a cursor would make a loop spin).
 */
import { nearestName } from './errors.js';
import type { PresenceMember } from '../workers/define.js';

/** Entries per page when `limit` is left out. */
export const PAGE_DEFAULT_LIMIT = 100;
/** Largest `limit`. */
export const PAGE_MAX_LIMIT = 10_000;
/** Longest `after`, in UTF-16 units (a room name is at most 65535 UTF-8 bytes; a member cursor is short). */
const MAX_CURSOR_LENGTH = 0xffff;

const PAGE_OPTIONS: readonly string[] = ['limit', 'after'];

/** Checked paging options. `after` null: from the start. */
export interface PageRequest {
  readonly limit: number;
  readonly after: string | null;
}

/**
 * Checks `{ limit?, after? }` as given to `where` (`listRooms()`, `room()`, `server.roomMembers()`):
 * TypeError for a wrong type or an unknown key (with the closest name), RangeError for a value out
 * of range. `members`: `after` must be a member cursor (see memberCursor).
 */
export function checkPageOptions(options: unknown, where: string, members: boolean): PageRequest {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${where} options must be an object { limit?, after? }`);
  }
  for (const k of Object.keys(options)) {
    if (PAGE_OPTIONS.includes(k)) continue;
    const near = nearestName(k, PAGE_OPTIONS);
    throw new TypeError(`${where} options.${k} is not an option${near !== undefined ? ` (did you mean ${near}?)` : ''}`);
  }
  const o = options as { limit?: unknown; after?: unknown };
  let limit = PAGE_DEFAULT_LIMIT;
  if (o.limit !== undefined) {
    if (typeof o.limit !== 'number' || !Number.isInteger(o.limit)) {
      throw new TypeError(`${where} options.limit must be an integer between 1 and ${PAGE_MAX_LIMIT}`);
    }
    if (o.limit < 1 || o.limit > PAGE_MAX_LIMIT) {
      throw new RangeError(`${where} options.limit must be an integer between 1 and ${PAGE_MAX_LIMIT}, got ${o.limit}`);
    }
    limit = o.limit;
  }
  let after: string | null = null;
  if (o.after !== undefined) {
    // null is refused rather than taken for "from the start": a loop that passes a last page's
    // `next` (null) back would start over for ever.
    if (typeof o.after !== 'string') {
      throw new TypeError(`${where} options.after must be a string (a page's next; left out for the first page)`);
    }
    if (o.after.length > MAX_CURSOR_LENGTH) throw new RangeError(`${where} options.after is longer than any ${members ? 'cursor' : 'room name'}`);
    if (members && parseMemberCursor(o.after) === null) {
      throw new RangeError(`${where} options.after must be a member cursor (a page's next: "handle" or "node:handle"), got ${JSON.stringify(o.after.slice(0, 80))}`);
    }
    after = o.after;
  }
  return { limit, after };
}

/** A member's cursor: its handle, prefixed with `node:` in a cluster (the documented `${nodeId}:${handle}` identity). */
export function memberCursor(m: PresenceMember): string {
  return m.node === '' ? String(m.handle) : `${m.node}:${m.handle}`;
}

/** The (node, handle) of a member cursor; null when it is not one. The handle is the digits after the last ':'. */
export function parseMemberCursor(s: string): { node: string; handle: number } | null {
  const i = s.lastIndexOf(':');
  const digits = s.slice(i + 1);
  if (!/^\d{1,16}$/.test(digits)) return null;
  const handle = Number(digits);
  if (!Number.isSafeInteger(handle)) return null;
  return { node: i < 0 ? '' : s.slice(0, i), handle };
}

/** Member order: node, then handle (UTF-16 order for the node, as `<` compares). */
export function compareMembers(a: { node: string; handle: number }, b: { node: string; handle: number }): number {
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return a.handle - b.handle;
}

/**
 * The first `limit` members after `after` in member order, one entry per member (a member listed
 * twice, by this node and Redis say, once), whether any member follows them, and how many distinct
 * members there are in all. A page is selected, not sorted out of the whole room: a bounded
 * max-heap of `limit` + 1 keeps the smallest, so a page of a 100k-member room costs one pass and
 * O(n log limit) comparisons on the I/O thread, not a sort of every member after the cursor.
 */
export function membersAfter(members: readonly PresenceMember[], after: string | null, limit: number): { rest: PresenceMember[]; more: boolean; total: number } {
  const from = after === null ? null : parseMemberCursor(after);
  const cap = limit + 1;
  const heap: PresenceMember[] = [];
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    if (from !== null && compareMembers(m, from) <= 0) continue;
    if (heap.length < cap) heapPush(heap, m);
    else if (compareMembers(m, heap[0]!) < 0) heapReplaceTop(heap, m);
  }
  // Not filled: every member after the cursor is in it, so none follows the page.
  const filled = heap.length === cap;
  heap.sort(compareMembers);
  let n = 0;
  for (let i = 0; i < heap.length; i++) if (n === 0 || compareMembers(heap[n - 1]!, heap[i]!) !== 0) heap[n++] = heap[i]!;
  heap.length = n;
  // A heap that filled holds at most `limit` + 1 distinct members, or fewer with repeats among them:
  // then some of the room may follow the last one kept, and the walk goes on (a later page may be empty).
  const more = n > limit || (filled && n > 0 && countAfter(members, heap[n - 1]!) > 0);
  if (n > limit) heap.length = limit;
  // One node's members are keyed by handle (no repeats); several nodes' come partly from Redis.
  const clustered = members.length > 0 && members[0]!.node !== '';
  const total = clustered ? new Set(members.map(memberCursor)).size : members.length;
  return { rest: heap, more, total };
}

/** Whether any member sorts after `last` (only asked when the heap dropped repeats). */
function countAfter(members: readonly PresenceMember[], last: PresenceMember): number {
  let k = 0;
  for (let i = 0; i < members.length; i++) if (compareMembers(members[i]!, last) > 0) k++;
  return k;
}

/** Max-heap by member order (the largest kept on top, the first to go when a smaller one comes). */
function heapPush(h: PresenceMember[], m: PresenceMember): void {
  let i = h.length;
  h.push(m);
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (compareMembers(h[p]!, m) >= 0) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = m;
}

function heapReplaceTop(h: PresenceMember[], m: PresenceMember): void {
  const n = h.length;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && compareMembers(h[r]!, h[l]!) > 0 ? r : l;
    if (compareMembers(h[c]!, m) <= 0) break;
    h[i] = h[c]!;
    i = c;
  }
  h[i] = m;
}

/** Index of the first name in `sorted` (ascending, UTF-16 order) that sorts after `after`. */
export function firstAfter(sorted: readonly string[], after: string | null): number {
  if (after === null) return 0;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * How many of `entries` (from `from`) go on a page: at most `limit` and, unless `maxBytes` is
 * Infinity, no more than fit `maxBytes` of JSON together with `fixedBytes` (the page's other fields)
 * and the cursor of its last entry. At least one when any remains (it then fails as too large,
 * rather than leaving a walk stuck on an empty page). Returns the count and each entry's JSON.
 */
export function cutPage<T>(entries: readonly T[], from: number, limit: number, maxBytes: number, fixedBytes: number,
  cursorOf: (e: T) => string): { count: number; json: string[] } {
  const json: string[] = [];
  const end = Math.min(entries.length, from + limit);
  if (maxBytes === Infinity) return { count: end - from, json };
  let used = fixedBytes;
  for (let i = from; i < end; i++) {
    const s = JSON.stringify(entries[i]);
    const bytes = Buffer.byteLength(s) + 1;
    // The page's next: this entry's cursor if the page ends here and more follow (else null, 4 bytes).
    const next = Math.max(4, Buffer.byteLength(JSON.stringify(cursorOf(entries[i]!))));
    if (json.length > 0 && used + bytes + next > maxBytes) break;
    json.push(s);
    used += bytes;
  }
  return { count: json.length, json };
}
