import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateManager } from '../../src/index.js';
import { requireBuild, runCli, tempDir } from './helpers.js';

describe('concord history pages', () => {
  const tmp = tempDir();
  const url = `sqlite:${join(tmp.dir, 'state.db')}`;

  beforeAll(async () => {
    requireBuild();
    const state = new StateManager({ store: url });
    let doc = await state.createDocumentState({ documentId: 'd', topic: 't', content: 'v1' });
    for (let v = 2; v <= 130; v++)
      doc = await state.updateDocumentContent({ documentId: 'd', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
    await state.close();
  });

  afterAll(() => tmp.cleanup());

  async function versions(args: string[]): Promise<number[]> {
    const res = await runCli(['history', 'd', '--state', url, '--json', ...args], { cwd: tmp.dir });
    expect(res.code, res.stderr).toBe(0);
    return (JSON.parse(res.stdout) as { versions: { version: number }[] }).versions.map((v) => v.version);
  }

  it('shows the 100 newest versions by default, --limit N, and --before V for the page before', async () => {
    expect(await versions([])).toEqual(Array.from({ length: 100 }, (_, i) => i + 31));
    expect(await versions(['--limit', '3'])).toEqual([128, 129, 130]);
    expect(await versions(['--limit', '3', '--before', '20'])).toEqual([17, 18, 19]);
    const table = await runCli(['history', 'd', '--state', url, '--limit', '3'], { cwd: tmp.dir });
    expect(table.stdout).toMatch(/older versions: concord history d --before 128/);
    const bad = await runCli(['history', 'd', '--state', url, '--before', '0'], { cwd: tmp.dir });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--before/);
  });
});
