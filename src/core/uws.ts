/**
 * The one place that loads uWebSockets.js. The installable package silently falls back
 * to a slow pure-JS `ws` shim on an unsupported Node or when UWS_USE_FALLBACK is set;
 * ringwire refuses to run on it (benchmarks and behaviour would be meaningless).
 */
import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';
import { UwsFallbackError } from '../shared/errors.js';

export const SUPPORTED_NODE_MAJORS = [16, 18, 20] as const;

const require = createRequire(import.meta.url);

/** True when `mod` is the native binding (the fallback lacks SSLApp, getParts and the compressor constants). */
export function isNativeUws(mod: unknown): boolean {
  if (mod === null || typeof mod !== 'object') return false;
  const m = mod as Record<string, unknown>;
  return typeof m['App'] === 'function' && typeof m['SSLApp'] === 'function' &&
    typeof m['getParts'] === 'function' && typeof m['DEDICATED_COMPRESSOR'] === 'number';
}

let cached: typeof UWS | undefined;

/** Load uWebSockets.js, throwing RW_ERR_UWS_FALLBACK if the native binary is not what loaded. */
export function loadUws(): typeof UWS {
  if (cached !== undefined) return cached;
  const mod: unknown = require('uWebSockets.js');
  if (!isNativeUws(mod)) {
    const why = process.env['UWS_USE_FALLBACK'] !== undefined
      ? 'UWS_USE_FALLBACK is set'
      : 'its native binary does not load on this Node';
    throw new UwsFallbackError(
      `uWebSockets.js fell back to its slow ws shim (${why}); running Node ${process.versions.node} ` +
      `(ABI ${process.versions.modules}), supported Node majors: ${SUPPORTED_NODE_MAJORS.join(', ')}. ` +
      'ringwire refuses to run on the fallback.');
  }
  cached = mod as typeof UWS;
  return cached;
}
