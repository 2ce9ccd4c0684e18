// `npm run bench -- --scale`: the scale curves. Every `*.mjs` file in bench/scale/ is a curve
// file; each exports `curves`, an array of curves (see bench/scale/README.md). Every
// repetition of a point runs in a fresh process (bench/lib/scale-point.mjs), the points of a curve in
// turn, `reps` passes; the table shows the median, and each curve the ratio of its last
// point to its first, so a regression in growth shows as plainly as one in speed.
//
//   npm run bench -- --scale                  every curve; writes the "Scale" section of docs/BENCHMARKS.md
//   npm run bench -- --scale --only state     curves whose id starts with a prefix (no docs unless --docs)
//   npm run bench -- --scale --reps 1         repetitions per point (default 3)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cleanupRedis } from './common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const benchDir = join(here, '..');
const scaleDir = join(benchDir, 'scale');
const SCALE_HEADING = '## Scale';

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmtValue(v) {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  if (Math.abs(v) >= 0.1) return v.toFixed(2);
  return v.toPrecision(2);
}

function fmtX(x) {
  return typeof x === 'number' && x >= 1000 ? (x % 1000 === 0 ? `${x / 1000}k` : x.toLocaleString('en-US')) : String(x);
}

/** Every curve of every file in bench/scale/, each with the file it came from. */
export async function loadCurves() {
  const files = readdirSync(scaleDir)
    .filter((f) => f.endsWith('.mjs'))
    .sort();
  const out = [];
  for (const file of files) {
    const mod = await import(pathToFileURL(join(scaleDir, file)).href);
    for (const curve of mod.curves ?? []) out.push({ ...curve, file });
  }
  return out;
}

function runPoint(curve, x, reps, ns, timeoutMs) {
  const child = spawn(
    process.execPath,
    [...(curve.node ?? []), join(here, 'scale-point.mjs'), curve.file, curve.id, JSON.stringify(x), String(reps), ns],
    {
      cwd: join(benchDir, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', async (code, signal) => {
      clearTimeout(timer);
      if (curve.redis) await cleanupRedis(ns).catch(() => {});
      const line = out.split('\n').find((l) => l.startsWith('SCALE_RESULT '));
      if (line) resolve({ ok: true, ...JSON.parse(line.slice('SCALE_RESULT '.length)) });
      else
        resolve({
          ok: false,
          reason: `exit ${code}${signal ? ` (${signal})` : ''}: ${(err || out).trim().split('\n').slice(-6).join(' | ')}`,
        });
    });
  });
}

/** Runs the curves (filtered by `only` prefixes), prints them, returns the results. */
export async function runScale({ only, reps = 3, redisUp, timeoutMs = 300_000 }) {
  const token = `cscale${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const curves = (await loadCurves()).filter((c) => !only || only.some((p) => c.id.startsWith(p)));
  const results = [];
  let seq = 0;
  for (const curve of curves) {
    console.log(`-- ${curve.id}: ${curve.title}`);
    const points = [];
    if (curve.redis && !redisUp) {
      console.log('   SKIPPED (Redis not reachable)');
      results.push({
        id: curve.id,
        title: curve.title,
        unit: curve.unit,
        higherIsBetter: curve.higherIsBetter,
        xLabel: curve.xLabel,
        skipped: 'Redis not reachable',
        points,
      });
      continue;
    }
    // One repetition of every point per pass, each in a fresh process, passes one after another:
    // the machine's speed drifts over minutes, and measuring the points in turn spreads the drift
    // over all of them instead of tilting the curve from its first point to its last.
    const runs = curve.points.map(() => ({ values: [], seconds: 0, failed: undefined }));
    for (let pass = 0; pass < reps; pass++) {
      for (const [i, x] of curve.points.entries()) {
        if (runs[i].failed) continue;
        const r = await runPoint(curve, x, 1, `${token}-${seq++}`, timeoutMs);
        if (r.ok) {
          runs[i].values.push(...r.values);
          runs[i].seconds += r.seconds;
        } else runs[i].failed = r.reason;
      }
    }
    for (const [i, x] of curve.points.entries()) {
      const r = runs[i];
      if (r.failed === undefined) {
        points.push({ x, median: median(r.values), values: r.values });
        console.log(
          `   ${String(fmtX(x)).padStart(6)}  ${fmtValue(median(r.values)).padStart(10)} ${curve.unit}   (${r.values.map(fmtValue).join(', ')}; ${r.seconds.toFixed(1)} s)`,
        );
      } else {
        points.push({ x, failed: r.failed });
        console.log(`   ${String(fmtX(x)).padStart(6)}  FAILED ${r.failed}`);
      }
    }
    results.push({
      id: curve.id,
      title: curve.title,
      unit: curve.unit,
      higherIsBetter: curve.higherIsBetter,
      xLabel: curve.xLabel,
      floor: curve.floor,
      points,
    });
  }
  return results;
}

/** Last point ÷ first point, as "cost grew by": for throughput first ÷ last, for a time last ÷ first. */
export function growth(curve) {
  const ok = curve.points.filter((p) => p.median !== undefined);
  if (ok.length < 2) return null;
  const first = ok[0].median;
  const last = ok[ok.length - 1].median;
  return curve.higherIsBetter ? first / last : last / first;
}

/** The "Scale" section of docs/BENCHMARKS.md, as markdown. */
export function renderScale(results, meta) {
  const out = [SCALE_HEADING, ''];
  out.push(
    'How costs grow with the work: each curve measured by `npm run bench -- --scale` (curves in `bench/scale/`, one file',
    'each). Every point is measured ' + `${meta.reps} time(s)` + ', each time in a fresh process, the points of a curve in turn (so the',
    "machine's drift over minutes spreads over every point instead of tilting the curve); the table shows the median.",
    '**Growth** is the cost at the last point ÷ the cost at the first (for a rate: first ÷ last), so 1.0× is flat.',
    'A curve with a **floor** is shown beside the same work done by the least plain JavaScript that can do it, measured',
    'the same way: the part of the growth that the runtime charges whatever the code (GC of long-lived objects, cache misses).',
    '',
    `Run: ${meta.date} · ${meta.durationSeconds} s · commit ${meta.commit}${meta.updated ? ` (${meta.updated})` : ''}`,
    '',
  );
  for (const c of results) {
    out.push(`### ${c.id} — ${c.title}`, '');
    if (c.skipped) {
      out.push(`Not measured: ${c.skipped}.`, '');
      continue;
    }
    const g = growth(c);
    out.push(`| ${c.xLabel} | ${c.unit} (median) | runs |`, '| ---: | ---: | --- |');
    for (const p of c.points) {
      if (p.failed) out.push(`| ${fmtX(p.x)} | **failed** | ${p.failed.replace(/\|/g, '\\|').slice(0, 200)} |`);
      else out.push(`| ${fmtX(p.x)} | ${fmtValue(p.median)} | ${p.values.map(fmtValue).join(', ')} |`);
    }
    out.push('', `Growth (last ÷ first): **${g === null ? '—' : `${g.toFixed(2)}×`}**`, '');
    const floor = c.floor && results.find((f) => f.id === c.floor);
    const fg = floor && !floor.skipped ? growth(floor) : null;
    if (fg !== null && g !== null) {
      out.push(
        `Beside its floor (\`${c.floor}\`, the same work in plain JavaScript, same run): the floor grew **${fg.toFixed(2)}×**,`,
        `so this curve grew **${(g / fg).toFixed(2)}×** what the runtime alone charges for the same growth.`,
        '',
      );
    }
  }
  return out.join('\n');
}

/** The Scale section of an existing docs file (to carry it over when the rest is regenerated), or null. */
export function readScaleSection(docsPath) {
  if (!existsSync(docsPath)) return null;
  const text = readFileSync(docsPath, 'utf8');
  const start = text.indexOf(`\n${SCALE_HEADING}\n`);
  if (start < 0) return null;
  const next = text.indexOf('\n## ', start + SCALE_HEADING.length + 2);
  return text.slice(start + 1, next < 0 ? undefined : next + 1).trimEnd();
}

/** Puts `section` into the docs file in place of its Scale section, or before "Notes and profiling". */
export function writeScaleSection(docsPath, section) {
  let text = existsSync(docsPath) ? readFileSync(docsPath, 'utf8') : '# Benchmarks\n';
  const old = readScaleSection(docsPath);
  if (old !== null) text = text.replace(old, section);
  else {
    const at = text.indexOf('\n## Notes and profiling');
    text = at < 0 ? `${text.trimEnd()}\n\n${section}\n` : `${text.slice(0, at + 1)}${section}\n\n${text.slice(at + 1)}`;
  }
  writeFileSync(docsPath, text);
}

/**
 * The curves of the last full run (bench/results/scale.json) with those of `results` in place
 * of theirs (or added), so a partial run can update the docs without re-running every curve.
 */
export function mergeScale(results, meta) {
  const path = join(benchDir, 'results', 'scale.json');
  const last = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : { results: [], meta };
  const merged = last.results.map((c) => results.find((r) => r.id === c.id) ?? c);
  for (const r of results) if (!merged.some((c) => c.id === r.id)) merged.push(r);
  const ids = results.map((r) => r.id).join(', ');
  // Every partial run since the full one is named (an earlier one's curves may still be shown).
  const updated = `${ids} re-measured ${meta.date} at commit ${meta.commit}`;
  return { results: merged, meta: { ...last.meta, updated: last.meta.updated ? `${last.meta.updated}; ${updated}` : updated } };
}

/** Saves the run as bench/results/scale.json (or scale-partial.json). */
export function saveScale(results, meta, partial) {
  const dir = join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  const name = partial ? 'scale-partial.json' : 'scale.json';
  writeFileSync(join(dir, name), JSON.stringify({ meta, results }, null, 2) + '\n');
  return name;
}
