import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RecordKind } from '../../src/shared/records.js';
import { _schemaFields } from '../../src/shared/verify.js';

const root = resolve(fileURLToPath(import.meta.url), '../../../..');
const generated = join(root, 'src', 'shared', 'generated');

test('committed generated code equals a fresh `npm run gen:schema`', (t) => {
  const probe = spawnSync('flatc', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    t.skip('flatc is not installed (apt-get install -y flatbuffers-compiler, 2.0.8): cannot regenerate to compare');
    return;
  }
  if (!/flatc version 2\.0\.8\b/.test(probe.stdout)) {
    t.skip(`flatc is ${probe.stdout.trim()}, the committed code comes from 2.0.8: output would differ`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'rw-gen-'));
  try {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-schema.mjs'), '--out', dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, `gen-schema failed: ${r.stderr}`);
    const fresh = readdirSync(dir).sort();
    assert.deepEqual(readdirSync(generated).sort(), fresh, 'the same set of files');
    for (const f of fresh) {
      assert.equal(readFileSync(join(generated, f), 'utf8'), readFileSync(join(dir, f), 'utf8'),
        `src/shared/generated/${f} is stale: run npm run gen:schema`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gen-schema fails with a clear message when flatc is missing', () => {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-schema.mjs'), '--out', join(tmpdir(), 'rw-never')], {
    encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' },
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /flatc .*not installed/);
});

/** Tables of a .fbs file as { name: [field types in id order] } (this schema uses no explicit ids). */
function parseTables(src: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const noComments = src.replace(/\/\/.*$/gm, '');
  for (const m of noComments.matchAll(/table\s+(\w+)\s*\{([^}]*)\}/g)) {
    const fields = [...m[2]!.matchAll(/(\w+)\s*:\s*([\w[\]]+)/g)].map((f) => f[2]!);
    out.set(m[1]!, fields);
  }
  return out;
}

test('the verifier\'s field table and RecordKind match schema/*.fbs', () => {
  const tables = parseTables(readFileSync(join(root, 'schema', 'records.fbs'), 'utf8'));
  const wire = parseTables(readFileSync(join(root, 'schema', 'wire.fbs'), 'utf8'));
  const F = _schemaFields;
  const code = (type: string): number => {
    switch (type) {
      case 'bool': case 'ubyte': return F.U8;
      case 'ushort': return F.U16;
      case 'uint': case 'int': return F.U32;
      case 'double': return F.F64;
      case 'string': return F.STR;
      case '[ubyte]': return F.VEC_U8;
      case '[double]': return F.VEC_F64;
      case '[string]': return F.VEC_STR;
      default: throw new Error(`type ${type} not handled by verify.ts`);
    }
  };
  assert.deepEqual([...F.WIRE_FRAME], wire.get('WireFrame')!.map(code));
  assert.deepEqual([...tables.keys()].sort(), Object.keys(RecordKind).sort(), 'one RecordKind per table');
  for (const [name, kind] of Object.entries(RecordKind)) {
    assert.deepEqual([...F.KIND_FIELDS[kind]!], tables.get(name)!.map(code), name);
  }
});
