/**
 * Loopback source addresses for the suite's client processes, handed out round-robin over
 * 127.0.0.2 .. 127.0.0.254 so that consecutive loads do not reuse the same address.
 *
 * Why: the load generator binds each socket to its source address before connecting
 * (bind-before-connect). Every port such a connection leaves in TIME_WAIT (60 s) stays
 * taken for bind() on that address, so after a few thousand connections from one address
 * the kernel's port search slows down dramatically (measured here: 10,000 upgrades took
 * 19 s instead of < 1 s after a storm run had used the same two addresses).
 */
const FIRST = 2;
const LAST = 254;
let next = FIRST;

/** First address index of `count` fresh consecutive addresses (127.0.0.<first> ...). */
export function takeSourceAddresses(count: number): number {
  if (!Number.isInteger(count) || count < 1 || count > LAST - FIRST + 1) throw new RangeError('count must be an integer in 1..253');
  if (next + count - 1 > LAST) next = FIRST;
  const first = next;
  next += count;
  return first;
}
