#!/usr/bin/env node
// Runs the compiled node:test files. Node 20's `node --test` has no glob support,
// so the file list is collected here. Usage: node scripts/run-tests.mjs [unit|integration]
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const which = process.argv[2];
const groups = which ? [which] : ['unit', 'integration'];
const files = [];
for (const g of groups) {
  const dir = join(root, 'dist', 'test', g);
  if (!existsSync(dir)) continue;
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.test.js')) files.push(join(dir, f));
}
if (files.length === 0) {
  console.error('run-tests: no compiled tests found under dist/test; run `npm run build` first');
  process.exit(1);
}
// A hung test fails after 5 minutes instead of hanging CI (the soak test sets its own, longer, timeout).
const args = ['--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=300000', ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
