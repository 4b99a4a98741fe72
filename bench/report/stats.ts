/**
 * The one median every benchmark uses, so that an even number of runs or samples means the same
 * thing everywhere.
 */

/** Median of numbers: the middle value, for an even count the mean of the two middle values; NaN when empty. */
export function median(xs: readonly number[]): number {
  const n = xs.length;
  if (n === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = n >> 1;
  return n % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** median(), null when there are no values (a sampler that got no sample). */
export function medianOrNull(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : median(xs);
}

/**
 * The median element by `key` (the run a table reports), undefined when empty. A run's figures
 * cannot be averaged with another run's, so for an even count this is the lower of the two
 * middle elements by key (the one at or below median(keys)), the same rule everywhere.
 */
export function medianItem<T>(items: readonly T[], key: (item: T) => number): T | undefined {
  if (items.length === 0) return undefined;
  const sorted = [...items].sort((a, b) => key(a) - key(b));
  return sorted[(sorted.length - 1) >> 1];
}
