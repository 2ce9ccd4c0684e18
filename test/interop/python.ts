/**
 * Runs the reference Python client (clients/python) from tests: with Debian's /usr/bin/python3
 * (the python3 first on PATH may be another install that does not see Debian's packages) and its
 * python3-redis and python3-jsonschema. Missing: the suites skip with a loud line, or fail under
 * CONCORD_REQUIRE_SERVICES=1 (what .ci/run sets, after installing them).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PYTHON = '/usr/bin/python3';
export const CLIENT_DIR = fileURLToPath(new URL('../../clients/python/', import.meta.url));
export const SCENARIOS = fileURLToPath(new URL('../../clients/python/tests/scenarios.py', import.meta.url));

/** True when /usr/bin/python3 imports redis and jsonschema; else skips loudly (or throws under CONCORD_REQUIRE_SERVICES=1). */
export function pythonAvailable(): boolean {
  let problem: string | undefined;
  if (!existsSync(PYTHON)) problem = `${PYTHON} does not exist`;
  else {
    const r = spawnSync(PYTHON, ['-c', 'import redis, jsonschema'], { encoding: 'utf8' });
    if (r.status !== 0)
      problem = `${PYTHON} cannot import redis and jsonschema (apt-get install python3-redis python3-jsonschema): ${r.stderr.trim().split('\n').pop()}`;
  }
  if (problem === undefined) return true;
  if (process.env['CONCORD_REQUIRE_SERVICES'] === '1')
    throw new Error(`the Python client is required (CONCORD_REQUIRE_SERVICES=1): ${problem}`);
  const line = `!!! ${problem}: the Python interop suite is SKIPPED`;
  console.warn('\n' + '!'.repeat(line.length) + '\n' + line + '\n' + '!'.repeat(line.length) + '\n');
  return false;
}

/** A running Python process: its output so far, and a wait for a line matching a pattern. */
export interface PythonProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function startPython(args: string[], env: Record<string, string> = {}): PythonProcess {
  const child = spawn(PYTHON, args, { cwd: CLIENT_DIR, env: { ...process.env, PYTHONPATH: CLIENT_DIR, PYTHONUNBUFFERED: '1', ...env } });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      for (const l of listeners) l();
      resolve(code);
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(pattern);
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(
              new Error(
                `python exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`python did not print ${pattern} within ${timeoutMs} ms\nstdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Runs a Python program to its end; rejects with its output when it fails. */
export async function runPython(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<{ stdout: string; stderr: string }> {
  const p = startPython(args, env);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`python ${args.join(' ')} exited ${code}\nstdout:\n${p.stdout()}\nstderr:\n${p.stderr()}`);
  return { stdout: p.stdout(), stderr: p.stderr() };
}
