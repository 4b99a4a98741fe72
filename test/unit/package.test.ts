import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// What `npm pack` puts in the tarball is what a user installs. dist/ is git-ignored, and npm falls
// back to .gitignore when package.json has no `files`: the package then holds no compiled code and
// `import 'ringwire'` fails with ERR_MODULE_NOT_FOUND. Asks npm itself for the file list (scripts
// off: `prepare` would rebuild), then checks every entry point package.json names is in it.
const root = fileURLToPath(new URL('../../../', import.meta.url));

function packedFiles(): Set<string> {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [report] = JSON.parse(out) as [{ files: { path: string }[] }];
  return new Set(report.files.map((f) => f.path));
}

function entryPoints(): string[] {
  const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
    main: string; types: string; bin: Record<string, string>;
    exports: Record<string, string | Record<string, string>>;
  };
  const paths = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
  for (const target of Object.values(pkg.exports)) paths.push(...(typeof target === 'string' ? [target] : Object.values(target)));
  return paths.map((p) => p.replace(/^\.\//, ''));
}

test('the packed tarball holds every entry point package.json names, the CLI and the worker runtime', () => {
  const files = packedFiles();
  const needed = [
    ...entryPoints(),
    'dist/src/cli/main.js',          // bin/ringwire.js imports it
    'dist/src/workers/runtime.js',   // the piscina workers' file
    'dist/src/workers/loader.js',
  ];
  assert.deepEqual(needed.filter((p) => !files.has(p)), []);
  // The compiled tests, benchmarks and examples are the checkout's, not the package's.
  assert.deepEqual([...files].filter((p) => p.startsWith('dist/test/') || p.startsWith('dist/bench/')), []);
});
