import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

it('docs/state-example.md runs and prints the output it shows', () => {
  const doc = readFileSync(path.join(ROOT, 'docs/state-example.md'), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(doc)?.[1];
  const output = /Output:\n\n```text\n([\s\S]*?)```/.exec(doc)?.[1];
  expect(code).toBeDefined();
  expect(output).toBeDefined();
  // The example imports the package by name; run it against the sources.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'concord-example-'));
  try {
    const file = path.join(dir, 'example.mts');
    writeFileSync(file, code!.replace(/from 'concord'/g, `from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}`));
    const run = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
