// Loads Concord from the built package (dist/, via the package's self-reference `concord-agents`).
// A part that is not built yet makes the subject skip loudly instead of crashing the run.
import { skip } from './common.mjs';

async function tryImport(spec) {
  try {
    return await import(spec);
  } catch (err) {
    return { __error: err };
  }
}

/** The root module if it has `names`; otherwise prints BENCH_SKIP and exits. */
export async function requireConcord(names, entry = 'concord-agents') {
  const mod = await tryImport(entry);
  if (mod.__error) {
    skip(`Concord part not built yet: cannot import ${entry} (${mod.__error.code ?? ''} ${String(mod.__error.message).split('\n')[0]})`);
    process.exit(0);
  }
  const missing = names.filter((n) => !(n in mod));
  if (missing.length) {
    skip(`Concord part not built yet: ${entry} does not export ${missing.join(', ')}`);
    process.exit(0);
  }
  return mod;
}

/** Options every benchmarked bus gets: the defaults a user gets. */
export const busDefaults = {}; // no logger: the bus's default (it logs nothing without one)
export const stateDefaults = {};
