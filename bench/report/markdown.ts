/** Markdown table and number formatting for the benchmark reports. */

/** Left-aligned first column, right-aligned numbers (columns whose header ends with '>' are right-aligned; the marker is dropped). */
export function mdTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const right = headers.map((h) => h.endsWith('>'));
  const names = headers.map((h) => (h.endsWith('>') ? h.slice(0, -1) : h));
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [`| ${names.map(esc).join(' | ')} |`, `|${right.map((r) => (r ? '---:' : '---')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.map(esc).join(' | ')} |`);
  return lines.join('\n');
}

export function int(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  return Math.round(n).toLocaleString('en-US');
}

/** µs: integers from 100 up, one decimal below. */
export function us(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  return n >= 100 ? int(n) : n.toFixed(1);
}

export function ratio(a: number | null | undefined, b: number | null | undefined, digits = 2): string {
  if (a === null || a === undefined || b === null || b === undefined || !(b > 0) || !Number.isFinite(a)) return '-';
  return `${(a / b).toFixed(digits)}x`;
}

export function pct(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  return n.toFixed(0);
}

export function bytes(n: number): string {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}
