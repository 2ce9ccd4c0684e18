#!/usr/bin/env node
// Summarises V8 CPU profiles (from `npm run bench -- --profile` or `node --cpu-prof`): the
// functions with the most self time, and the most inclusive time, each with file:line and its
// share of the sampled time, and the hottest source lines (`--lines N`, from V8's per-line ticks;
// sample finely for them: `node --cpu-prof --cpu-prof-interval 50 ...`).
// Usage: node bench/profile-summary.mjs <file.cpuprofile> [--top 25] [--filter src/] [--lines 30]
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { parseArgs } from './lib/common.mjs';

const args = parseArgs();
const files = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !(all[i - 1] ?? '').startsWith('--'));
const top = Number(args.top ?? 25);
const filter = typeof args.filter === 'string' ? args.filter : null;

// dist/*.js → src/*.ts through the compiler's source maps, so hot spots name the file to fix.
const maps = new Map();
function original(path, line, column) {
  if (!maps.has(path)) {
    let map = null;
    try {
      if (existsSync(path + '.map')) map = new SourceMap(JSON.parse(readFileSync(path + '.map', 'utf8')));
    } catch {}
    maps.set(path, map);
  }
  const map = maps.get(path);
  if (!map || line < 0) return null;
  const e = map.findEntry(line, Math.max(0, column));
  if (!e || !e.originalSource) return null;
  return [resolve(dirname(path), e.originalSource.replace(/^file:\/\//, '')), e.originalLine + 1];
}

for (const file of files) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map();
  const deltas = prof.timeDeltas;
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = deltas[i + 1] ?? 0; // time until the next sample belongs to this sample
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
    total += dt;
  }
  const where = (n) => {
    const cf = n.callFrame;
    let url = cf.url.replace(/^file:\/\//, '');
    let line = cf.lineNumber + 1;
    const mapped = url.startsWith('/') ? original(url, cf.lineNumber, cf.columnNumber) : null;
    if (mapped) [url, line] = mapped;
    if (url.startsWith('/')) url = relative(process.cwd(), url);
    return `${cf.functionName || '(anonymous)'} ${url ? `${url}:${line}` : ''}`.trim();
  };
  const selfBy = new Map();
  const inclBy = new Map();
  for (const [id, t] of self) {
    const key = where(nodes.get(id));
    selfBy.set(key, (selfBy.get(key) ?? 0) + t);
    // inclusive: credit each distinct function on the stack once
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const k = where(nodes.get(cur));
      if (seen.has(k)) continue;
      seen.add(k);
      inclBy.set(k, (inclBy.get(k) ?? 0) + t);
    }
  }
  const show = (m, title) => {
    console.log(`\n${title}`);
    const rows = [...m]
      .filter(([k]) => !filter || k.includes(filter))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top);
    for (const [k, t] of rows) console.log(`${((100 * t) / total).toFixed(1).padStart(6)}%  ${(t / 1000).toFixed(1).padStart(8)} ms  ${k}`);
  };
  console.log(`== ${file}: ${(total / 1000).toFixed(0)} ms sampled`);
  show(selfBy, 'self time');
  show(inclBy, 'inclusive time');
  if (args.lines) {
    // Per-line ticks of each function (inlined callees are credited to the line that called them).
    const byLine = new Map();
    let ticks = 0;
    for (const n of prof.nodes) {
      for (const pt of n.positionTicks ?? []) {
        const cf = n.callFrame;
        let url = cf.url.replace(/^file:\/\//, '');
        let line = pt.line;
        const mapped = url.startsWith('/') ? original(url, pt.line - 1, 0) : null;
        if (mapped) [url, line] = mapped;
        if (url.startsWith('/')) url = relative(process.cwd(), url);
        const key = `${url}:${line} (${cf.functionName || 'anonymous'})`;
        if (filter && !key.includes(filter)) continue;
        byLine.set(key, (byLine.get(key) ?? 0) + pt.ticks);
        ticks += pt.ticks;
      }
    }
    console.log('\nhottest lines (share of line ticks shown)');
    const rows = [...byLine].sort((a, b) => b[1] - a[1]).slice(0, Number(args.lines) || 30);
    for (const [k, t] of rows) console.log(`${((100 * t) / Math.max(1, ticks)).toFixed(1).padStart(6)}%  ${String(t).padStart(7)}  ${k}`);
  }
}
