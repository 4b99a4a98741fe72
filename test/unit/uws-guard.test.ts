import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadUws, isNativeUws } from '../../src/core/uws.js';

const uwsModule = fileURLToPath(new URL('../../src/core/uws.js', import.meta.url));

test('loadUws returns the native binary on this Node', () => {
  const uws = loadUws();
  assert.equal(isNativeUws(uws), true);
  assert.equal(typeof uws.App, 'function');
});

test('loadUws refuses the ws fallback with RW_ERR_UWS_FALLBACK (UWS_USE_FALLBACK set)', () => {
  // A child process, because the guard must see the package's own fallback path.
  const script = `
    import(${JSON.stringify(uwsModule)}).then((m) => {
      try { m.loadUws(); console.log(JSON.stringify({ ok: true })); }
      catch (e) { console.log(JSON.stringify({ code: e.code, name: e.name, message: e.message })); }
    });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, UWS_USE_FALLBACK: '1' }, encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  assert.ok(line, `no JSON line in child output: ${r.stdout}`);
  const out = JSON.parse(line) as { code?: string; message?: string };
  assert.equal(out.code, 'RW_ERR_UWS_FALLBACK');
  assert.ok(out.message?.includes(process.versions.node), 'message names the running Node version');
  assert.ok(out.message?.includes('16, 18, 20'), 'message names the supported Node majors');
});

test('isNativeUws rejects the fallback shape', () => {
  assert.equal(isNativeUws({ App() {}, _cfg() {} }), false);
  assert.equal(isNativeUws(null), false);
});
