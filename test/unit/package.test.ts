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

// The declarations a consumer compiles against (dist/src/*.d.ts, from the two entries) name only
// types the entries export: a public member whose type is declared in an internal file (Server
// once returned sessions.ts's own PresenceMember from roomMembers) cannot be named by the user
// and is a dangling link in the API reference. The I/O thread's host methods (acceptClient,
// closeFailed, ...) and internal state are @internal and stripped (tsconfig stripInternal).
test('the published declarations name only exported types, and Server shows only its public API', async () => {
  const { default: ts } = await import('typescript');
  const entries = ['index', 'module'].map((e) => `${root}dist/src/${e}.d.ts`);
  const program = ts.createProgram(entries, {
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
    strict: true, noEmit: true, types: ['node'],
  });
  assert.deepEqual(ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), []);
  const checker = program.getTypeChecker();
  const resolve = (s: import('typescript').Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const exported = new Set<import('typescript').Symbol>();
  for (const file of entries) {
    const mod = checker.getSymbolAtLocation(program.getSourceFile(file)!)!;
    for (const s of checker.getExportsOfModule(mod)) exported.add(resolve(s));
  }
  const ours = (d: import('typescript').Node) => d.getSourceFile().fileName.startsWith(`${root}dist/src/`);
  const leaks = new Set<string>();
  const walk = (n: import('typescript').Node, owner: string): void => {
    // private members are emitted untyped; #private has no type either
    if (ts.canHaveModifiers(n) && ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)) return;
    const name = ts.isTypeReferenceNode(n) ? n.typeName : ts.isExpressionWithTypeArguments(n) ? n.expression
      : ts.isTypeQueryNode(n) ? n.exprName : null;
    if (name !== null) {
      let s = checker.getSymbolAtLocation(ts.isQualifiedName(name) ? name.left : ts.isPropertyAccessExpression(name) ? name.expression : name);
      if (s !== undefined) s = resolve(s);
      // a type alias tagged @inline (options.ts's MaybePromise) is written out in place by typedoc
      const inlined = s?.declarations?.some((d) => ts.getJSDocTags(d).some((t) => t.tagName.text === 'inline'));
      if (s !== undefined && !(s.flags & ts.SymbolFlags.TypeParameter) && s.declarations?.some(ours) && !exported.has(s) && !inlined) {
        leaks.add(`${owner} → ${s.name} (${s.declarations[0]!.getSourceFile().fileName.slice(root.length)})`);
      }
    }
    ts.forEachChild(n, (c) => walk(c, owner));
  };
  for (const s of exported) for (const d of s.declarations ?? []) if (ours(d)) walk(d, s.name);
  assert.deepEqual([...leaks].sort(), []);

  const server = [...exported].find((s) => s.name === 'Server')!;
  const members = checker.getDeclaredTypeOfSymbol(server).getProperties()
    .filter((p) => !(ts.getCombinedModifierFlags(p.valueDeclaration!) & ts.ModifierFlags.Private)).map((p) => p.name).sort();
  assert.deepEqual(members, [
    'boundPort', 'close', 'connection', 'connections', 'listRooms', 'listen', 'listening', 'moduleDescriptors', 'nodeId', 'options',
    'roomMembers', 'stats', 'subscribers', 'uidHandles',
  ]);
});
