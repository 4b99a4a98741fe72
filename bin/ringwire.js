#!/usr/bin/env node
// The `ringwire` command. The CLI is TypeScript (src/cli), compiled by `npm run build` into
// dist/; this launcher only imports it and turns its result into the exit status.
let cli;
try {
  cli = await import('../dist/src/cli/main.js');
} catch (err) {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
    process.stderr.write('ringwire: dist/src/cli/main.js is missing; run `npm run build` in the ringwire package first\n');
    process.exit(1);
  }
  throw err;
}
process.exitCode = await cli.main(process.argv.slice(2));
