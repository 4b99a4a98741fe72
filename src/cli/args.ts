/**
 * Command-line parsing for the `ringwire` CLI: a thin layer over `node:util` parseArgs that
 * turns every parse failure into a UsageError naming the flag (exit status 2), plus the value
 * parsers the commands share. Nothing here touches a server.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync, statSync } from 'node:fs';
import { extname, isAbsolute, join, relative, resolve } from 'node:path';
import { nearestName } from '../shared/errors.js';

/** A command line the CLI cannot act on: printed on stderr, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: readonly string[];
  /** Arguments after a bare `--`, untouched. */
  readonly rest: readonly string[];
}

/** parseArgs (strict) with errors rewritten to name the flag. */
export function parse(argv: readonly string[], options: OptionSpecs): Parsed {
  const dd = argv.indexOf('--');
  const own = joinNegativeValues(dd === -1 ? [...argv] : argv.slice(0, dd), options);
  const rest = dd === -1 ? [] : argv.slice(dd + 1);
  try {
    const r = parseArgs({ args: own, options, strict: true, allowPositionals: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals, rest };
  } catch (err) {
    throw new UsageError(describeParseError(err, options));
  }
}

/**
 * `--workers -1` → `--workers=-1`: parseArgs takes a value starting with '-' for an option, so the
 * user saw "needs a value" instead of the range error naming what the flag takes.
 */
function joinNegativeValues(args: string[], options: OptionSpecs): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (a.startsWith('--') && !a.includes('=') && options[a.slice(2)]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function describeParseError(err: unknown, options: OptionSpecs): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  // parseArgs quotes the offending option: "Unknown option '--foo'", "Option '--port <value>' argument missing".
  // "Option '-h, --help' ..." names the short form first: take the long one.
  const flag = /'(?:-\w, )?(--?[\w-]+)/.exec(msg)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      // The hint createServer gives a misspelt option (`worker: 2`), for its flag (`--worker 2`).
      const near = flag?.startsWith('--') ? nearestName(flag.slice(2), Object.keys(options)) : undefined;
      return `unknown option ${flag ?? msg}${near !== undefined ? ` (did you mean --${near}?)` : ''}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (flag !== undefined && /does not take an argument/.test(msg)) return `option ${flag} does not take a value`;
      if (flag !== undefined) return `option ${flag} needs a value (${flag} <value> or ${flag}=<value>)`;
      return msg;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument: ${msg}`;
    default:
      return msg;
  }
}

const SIZE = /^(\d+)(?:([kKmMgG])(?:i?[bB])?)?$/;
const SIZE_UNIT: Record<string, number> = { k: 1 << 10, m: 1 << 20, g: 1 << 30 };

/**
 * An integer flag value. `bytes` also accepts binary size suffixes: 64K, 1M, 1MiB, 2G.
 * Range checks are left to createServer(), whose `options.x` errors are mapped back to flags.
 */
export function intValue(flag: string, raw: string, bytes = false): number {
  const m = bytes ? SIZE.exec(raw) : /^(\d+)$/.exec(raw);
  if (m === null) {
    throw new UsageError(`${flag} must be ${bytes ? 'a byte count (e.g. 1048576, 64K, 1M)' : 'a non-negative integer'}, got ${JSON.stringify(raw)}`);
  }
  const unit = m[2] === undefined ? 1 : SIZE_UNIT[m[2].toLowerCase()]!;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} is too large: ${raw}`);
  return n;
}

/** A choice among fixed values. */
export function choiceValue<T extends string>(flag: string, raw: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(raw)) return raw as T;
  throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
}

const TS_SOURCE = new Set(['.ts', '.mts', '.cts']);
const JS_OF: Record<string, string> = { '.ts': '.js', '.mts': '.mjs', '.cts': '.cjs' };

/**
 * A module or hooks file given on the command line, as an absolute path of compiled
 * JavaScript. A TypeScript source path (`examples/echo/echo.module.ts`) resolves to its
 * compiled twin under `dist/` (tsc's `rootDir: "."`, `outDir: "dist"` layout), looked up
 * relative to the current directory first, then to the ringwire package root.
 */
export function resolveCodeFile(what: string, arg: string, cwd: string, packageRoot: string): string {
  const abs = isAbsolute(arg) ? arg : resolve(cwd, arg);
  const ext = extname(abs);
  if (TS_SOURCE.has(ext) && !abs.endsWith(`.d${ext}`)) {
    const tried: string[] = [];
    for (const base of [cwd, packageRoot]) {
      const rel = relative(base, abs);
      if (rel.startsWith('..') || isAbsolute(rel)) continue;
      const out = join(base, 'dist', rel.slice(0, -ext.length) + JS_OF[ext]!);
      if (tried.includes(out)) continue;
      tried.push(out);
      if (isFile(out)) return out;
    }
    throw new UsageError(tried.length === 0
      ? `${what} ${arg} is TypeScript outside this project; pass its compiled .js file`
      : `${what} ${arg} is TypeScript and has no compiled file (looked for ${tried.join(', ')}); run \`npm run build\` or pass the .js file`);
  }
  if (!isFile(abs)) throw new UsageError(`${what} ${arg} does not exist (or is not a file)`);
  return abs;
}

function isFile(p: string): boolean {
  return existsSync(p) && statSync(p).isFile();
}
