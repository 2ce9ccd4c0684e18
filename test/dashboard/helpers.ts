import { existsSync } from 'node:fs';

/** Debian's Chromium, which playwright-core drives (`.ci/run` installs it when missing). */
export const CHROMIUM = process.env['CONCORD_CHROMIUM'] ?? '/usr/bin/chromium';

/**
 * True when Chromium is installed. When it is not: throws under CONCORD_REQUIRE_SERVICES=1,
 * otherwise prints a loud line and returns false (the browser suite skips), as services.ts does.
 */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env['CONCORD_REQUIRE_SERVICES'] === '1') {
    throw new Error(`Chromium is required (CONCORD_REQUIRE_SERVICES=1) but missing at ${CHROMIUM}: apt-get install -y chromium`);
  }
  const line = `!!! Chromium is missing at ${CHROMIUM}: the dashboard browser suite is SKIPPED (apt-get install -y chromium)`;
  console.warn('\n' + '!'.repeat(line.length) + '\n' + line + '\n' + '!'.repeat(line.length) + '\n');
  return false;
}

/** One sample of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The parsed exposition: each metric family's type and help, and every sample. */
export interface Exposition {
  types: Map<string, string>;
  help: Map<string, string>;
  samples: Sample[];
}

/** Parses Prometheus' text exposition format (version 0.0.4), strictly: an unparsable line throws. */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let m = line.match(/^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/);
    if (m) {
      (m[1] === 'TYPE' ? types : help).set(m[2]!, m[3]!);
      continue;
    }
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m) throw new Error(`not a Prometheus text line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    if (Number.isNaN(value)) throw new Error(`bad sample value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, help, samples };
}

/** The family a sample belongs to (histogram samples end in _bucket, _sum, _count). */
export function familyOf(e: Exposition, sample: string): string | undefined {
  if (e.types.has(sample)) return sample;
  const base = sample.replace(/_(bucket|sum|count)$/, '');
  return e.types.has(base) ? base : undefined;
}
