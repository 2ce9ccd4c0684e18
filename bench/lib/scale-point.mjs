// Measures one point of one scale curve in this fresh process: `setup(x, ctx)` once, then
// `measure(state, x, ctx)` once untimed and `reps` times timed, then `teardown(state)`. Prints
// `SCALE_RESULT {json}`. The untimed call: the runner starts a fresh process per repetition, and
// a curve whose work is all in `measure` (registering 10k agents) would otherwise time cold code.
//   node bench/lib/scale-point.mjs <file in bench/scale> <curve id> <x as JSON> <reps> <namespace>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { REDIS_URL, cleanupRedis } from './common.mjs';

const [file, id, xJson, repsArg, ns] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const mod = await import(pathToFileURL(join(here, '..', 'scale', file)).href);
const curve = mod.curves.find((c) => c.id === id);
if (!curve) throw new Error(`no curve \`${id}\` in bench/scale/${file}`);
const x = JSON.parse(xJson);
const dir = mkdtempSync(join(tmpdir(), 'concord-scale-'));
const ctx = { ns, dir, redisUrl: REDIS_URL };
const started = Date.now();
const values = [];
let state;
try {
  state = await curve.setup?.(x, ctx);
  await curve.measure(state, x, ctx); // warm-up
  for (let r = 0; r < Number(repsArg); r++) values.push(await curve.measure(state, x, ctx));
} finally {
  await curve.teardown?.(state, x, ctx);
  rmSync(dir, { recursive: true, force: true });
  if (curve.redis) await cleanupRedis(ns).catch(() => {});
}
process.stdout.write(`SCALE_RESULT ${JSON.stringify({ values, seconds: (Date.now() - started) / 1000 })}\n`);
process.exit(0);
