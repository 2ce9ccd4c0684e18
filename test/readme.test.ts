import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

it('the quick start in the README is examples/quickstart.mjs, word for word', () => {
  const shown = /```js\n([\s\S]*?)```/.exec(README)?.[1];
  expect(shown).toBe(readFileSync(path.join(ROOT, 'examples/quickstart.mjs'), 'utf8'));
});

it('the state example in the README runs and prints the output it shows', () => {
  const doc = README;
  const code = /```ts\n([\s\S]*?)```/.exec(doc)?.[1];
  const output = /Output:\n\n```text\n([\s\S]*?)```/.exec(doc)?.[1];
  expect(code).toBeDefined();
  expect(output).toBeDefined();
  // The example imports the package by name; run it against the sources.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'concord-example-'));
  try {
    const file = path.join(dir, 'example.mts');
    writeFileSync(file, code!.replace(/from 'concord-agents'/g, `from ${JSON.stringify(path.join(ROOT, 'src/index.ts'))}`));
    const run = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
