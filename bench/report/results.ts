/** Where benchmark results go: the committed bench/results/ folder, or `--out DIR`. */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/bench/report/results.js -> <repo>/bench/results/
export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results/', import.meta.url));

/** A micro-benchmark's results folder: `--out DIR` (resolved) when given, else RESULTS_DIR. */
export function outDirArg(argv: readonly string[]): string {
  const i = argv.indexOf('--out');
  if (i < 0) return RESULTS_DIR;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new TypeError('--out needs a directory');
  return resolve(v);
}
