import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { ErrorCodes } from '../../src/shared/errors.js';

// fastify habit: an error code missing from the docs fails the build.
test('every RW_ERR_* code is documented in the README error-code table', () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const missing = Object.values(ErrorCodes).filter((code) => !readme.includes(`| \`${code}\` |`));
  assert.deepEqual(missing, []);
});

test('every error class the README error-code table names is exported from the package entry', async () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const named = [...readme.matchAll(/^\| `RW_ERR_[A-Z_]+` \| `([A-Za-z]+)` \|/gm)].map((m) => m[1]!);
  assert.ok(named.length >= 10, `found ${named.length} classes in the table`);
  const entry = await import('../../src/index.js') as Record<string, unknown>;
  assert.deepEqual(named.filter((n) => typeof entry[n] !== 'function'), []);
});

test('the uWS fallback switch appears in no test or benchmark except the guard test', () => {
  const root = new URL('../../../', import.meta.url);
  const flag = ['UWS', 'USE', 'FALLBACK'].join('_');
  const allowed = new Set(['test/unit/uws-guard.test.ts']);
  const offenders: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(new URL(rel, root), { withFileTypes: true })) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else if (/\.(ts|js|mjs)$/.test(e.name) && !allowed.has(path) && readFileSync(new URL(path, root), 'utf8').includes(flag)) {
        offenders.push(path);
      }
    }
  };
  walk('test');
  walk('bench');
  assert.deepEqual(offenders, []);
});
