/** Small text-formatting helpers for the CLI's human output. */

/** A plain table: left-aligned columns separated by two spaces, header row first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `0.8512` → `0.85`. */
export function score(value: number | undefined): string {
  return value === undefined ? '-' : value.toFixed(2);
}

/** `{ research: 0.9, writing: 0.8 }` → `research 0.90 · writing 0.80`. */
export function scores(values: Record<string, number>, order?: string[]): string {
  const keys = order ? order.filter((k) => k in values) : Object.keys(values);
  return keys.length === 0 ? '-' : keys.map((k) => `${k} ${score(values[k])}`).join(' · ');
}

/** An ISO timestamp without milliseconds, in UTC: `2025-01-02 10:11:12Z`. */
export function timestamp(value: Date | string): string {
  const d = typeof value === 'string' ? new Date(value) : value;
  return Number.isNaN(d.getTime())
    ? String(value)
    : d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');
}

/** `1234` → `1.2s`, `75000` → `1m15s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}

/** JSON for `--json` output: stable two-space indentation, dates as ISO strings. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** Quotes a shell argument only when it needs it, so printed commands can be pasted. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_\-./:=@%+,]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
