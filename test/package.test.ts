/**
 * The front door: the package as a user gets it. `npm pack` the built tree (`npm test` builds
 * first), install the tarball into an empty folder, and use it there the way the README says:
 * `npx concord demo`, `import` and `require()`. Needs npm and its cache (or the npm registry).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; bin: Record<string, string> };

/** No CONCORD_* settings and no npm_* variables of a surrounding `npm test` (its local prefix is this checkout). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(CONCORD_|npm_)/i.test(k)) env[k] = v;
  return env;
}

let work: string;
let app: string;
let packed: string[];

/** Runs a command in the app folder; resolves with its exit code and output instead of throwing. */
async function inApp(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: app, env: cleanEnv(), timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** Makes an already built driver of this checkout visible to the app, as `npm install <name>` would (without compiling it again). */
function provide(name: string): void {
  const from = join(ROOT, 'node_modules', name);
  if (!existsSync(from)) throw new Error(`${from} is missing: run \`npm install\` in the checkout first`);
  mkdirSync(dirname(join(app, 'node_modules', name)), { recursive: true });
  symlinkSync(from, join(app, 'node_modules', name), 'dir');
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'index.js'))) await run('npm', ['run', 'build', '--silent'], { cwd: ROOT, timeout: 180_000 });
  work = mkdtempSync(join(tmpdir(), 'concord-package-'));
  app = join(work, 'app');
  mkdirSync(app);
  // --ignore-scripts: pack the tree as built, without rebuilding dist/ under tests running in parallel.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
    cwd: ROOT,
    env: cleanEnv(),
    timeout: 60_000,
  });
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  packed = info!.files.map((f) => f.path);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--prefix', app, join(work, info!.filename)], {
    cwd: app,
    env: cleanEnv(),
    timeout: 120_000,
  });
}, 200_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe(`the packed package (${pkg.name})`, () => {
  it('is named after itself, not the unrelated `concord`, and keeps the `concord` command', () => {
    expect(pkg.name).toBe('concord-agents');
    expect(Object.keys(pkg.bin)).toEqual(['concord']);
    expect(existsSync(join(app, 'node_modules', '.bin', 'concord'))).toBe(true);
  });

  it('ships its LICENSE, and every source a source map names', () => {
    expect(packed).toContain('LICENSE');
    expect(packed).toContain('dist/index.js');
    expect(packed.filter((p) => p.startsWith('test/') || p.startsWith('bench/'))).toEqual([]);
    const installed = join(app, 'node_modules', pkg.name);
    const maps: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.map')) maps.push(path);
      }
    };
    walk(join(installed, 'dist'));
    expect(maps.length).toBeGreaterThan(0);
    const missing = maps.flatMap((map) => {
      const { sources } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] };
      return sources.map((s) => resolve(dirname(map), s)).filter((s) => !existsSync(s));
    });
    expect(missing).toEqual([]);
  });

  it('`npx concord demo` names the one peer it needs and how to install it, then works once it is there', async () => {
    const without = await inApp('npx', ['concord', 'demo']);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain('needs the better-sqlite3 package: npm install better-sqlite3');

    provide('better-sqlite3');
    const demo = await inApp('npx', ['concord', 'demo']);
    expect(demo.code).toBe(0);
    // Progress goes to stderr, the result to stdout.
    expect(demo.stderr).not.toMatch(/^concord:|Error|Warning/m);
    expect(demo.stderr).toMatch(/workflow \S+ completed after 1 iteration/);
    expect(demo.stdout).toMatch(/Document written to \.concord\/out\/\S+\.md/);
    // The hints it prints work here, through the bin.
    expect(demo.stdout).toMatch(/npx concord history doc-\S+/);
  }, 90_000);

  it('loads with require() from CommonJS, the root and every subpath', async () => {
    provide('ioredis');
    const script = `
      const out = {};
      for (const spec of ['${pkg.name}', '${pkg.name}/sqlite', '${pkg.name}/redis', '${pkg.name}/agents']) out[spec] = Object.keys(require(spec)).sort();
      console.log(JSON.stringify(out));`;
    const cjs = await inApp(process.execPath, ['--no-warnings', '-e', script]);
    expect(cjs.stderr).toBe('');
    const loaded = JSON.parse(cjs.stdout) as Record<string, string[]>;
    expect(loaded[pkg.name]).toEqual(expect.arrayContaining(['MessageBus', 'StateManager', 'MessageType', 'defineAgent']));
    expect(loaded[`${pkg.name}/sqlite`]).toContain('createSqliteStore');
    expect(loaded[`${pkg.name}/redis`]).toEqual(expect.arrayContaining(['createRedisTransport', 'createRedisStore']));
    expect(loaded[`${pkg.name}/agents`]).toContain('createDocumentAgents');

    // ESM gets the same module as CommonJS.
    const esm = await inApp(process.execPath, [
      '--input-type=module',
      '-e',
      `import * as c from '${pkg.name}'; console.log(Object.keys(c).sort().join(','))`,
    ]);
    expect(esm.stderr).toBe('');
    expect(esm.stdout.trim()).toBe(loaded[pkg.name]!.join(','));
  }, 60_000);
});
