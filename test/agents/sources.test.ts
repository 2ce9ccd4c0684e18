import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_SOURCE_BYTES,
  createResearchAgent,
  createVerificationAgent,
  loadSources,
  readCitedSources,
  type SkippedSource,
} from '../../src/agents/index.js';
import { requireBuild, runCli } from '../cli/helpers.js';
import { SAMPLES, call } from './helpers.js';

const NOTE = '# Steeping\n\nGreen tea steeps for two minutes in water just below boiling point.\n';
const SECRET = '# Secret\n\nThe launch password is swordfish and nobody outside may read it.\n';

describe('reading the sources folder (symlinks, size, binary)', () => {
  let base: string;
  let dir: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'concord-sources-'));
    dir = join(base, 'notes');
    await mkdir(dir);
    await writeFile(join(dir, 'steeping.md'), NOTE);
    await writeFile(join(base, 'secret.md'), SECRET);
    await symlink(join(base, 'secret.md'), join(dir, 'outside-link.md'));
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'brewing.md'), '# Brewing\n\nBlack tea brews for four minutes in boiling water.\n');
    await symlink(join(dir, 'sub', 'brewing.md'), join(dir, 'inside-link.md'));
    // 600 MB without writing 600 MB: a sparse file.
    await writeFile(join(dir, 'huge.md'), '# Huge\n');
    await truncate(join(dir, 'huge.md'), 600 * 1024 * 1024);
    await writeFile(join(dir, 'random.md'), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0]), randomBytes(4096)]));
    await writeFile(join(dir, 'latin1.txt'), Buffer.from('Caf\xe9 au lait is brewed with hot milk and strong coffee.\n', 'latin1'));
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it('research reads only regular text files inside the folder, and says which it skipped and why', async () => {
    const skipped: SkippedSource[] = [];
    const files = await loadSources(dir, { onSkip: (s) => skipped.push(s) });
    expect(files.map((f) => f.path)).toEqual(['steeping.md', 'sub/brewing.md']);
    expect(skipped).toEqual([
      { source: 'huge.md', reason: `is 600.0 MB, over the ${(DEFAULT_MAX_SOURCE_BYTES / 1048576).toFixed(1)} MB limit for a source file` },
      { source: 'latin1.txt', reason: 'is not text (it is not valid UTF-8)' },
      { source: 'outside-link.md', reason: 'is a link to a file outside the sources folder' },
      { source: 'random.md', reason: 'is not text (it holds NUL bytes)' },
    ]);
    expect(files.some((f) => f.text.includes('swordfish'))).toBe(false);
  });

  it('a symlink to a file inside the folder is read when its target is not walked anyway', async () => {
    const other = await mkdtemp(join(tmpdir(), 'concord-sources-in-'));
    try {
      await mkdir(join(other, '.hidden'));
      await copyFile(join(dir, 'steeping.md'), join(other, '.hidden', 'steeping.md'));
      await symlink(join(other, '.hidden', 'steeping.md'), join(other, 'linked.md'));
      const files = await loadSources(other);
      expect(files.map((f) => f.path)).toEqual(['linked.md']);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('the size limit is configurable', async () => {
    const skipped: SkippedSource[] = [];
    const files = await loadSources(dir, { maxBytes: 40, onSkip: (s) => skipped.push(s) });
    expect(files.map((f) => f.path)).toEqual([]);
    expect(skipped.find((s) => s.source === 'steeping.md')?.reason).toMatch(/over the 0\.0 MB limit/);
  });

  it('the research agent lists the skipped files in its result and reports each once', async () => {
    const heard: SkippedSource[] = [];
    const agent = createResearchAgent({ sourcesDir: dir, onSkip: (s) => heard.push(s) });
    const { result } = await call(agent, { topic: 'green tea steeping' });
    expect(result?.passages[0]?.source).toBe('steeping.md');
    expect(result?.skipped?.map((s) => s.source)).toEqual(['huge.md', 'latin1.txt', 'outside-link.md', 'random.md']);
    await call(agent, { topic: 'black tea' });
    expect(heard).toHaveLength(4);
  });

  it('verification never follows a symlink out of the folder, but reads one that stays inside', async () => {
    const content =
      '# T\n\n## S\n\nThe launch password is swordfish [1]. Black tea brews for four minutes [2].\n\n## References\n\n[1] outside-link.md:3-3\n\n[2] inside-link.md:3-3\n';
    const sources = await readCitedSources(dir, content);
    expect(sources.get('outside-link.md')).toBeNull();
    expect(sources.get('inside-link.md')?.[2]).toBe('Black tea brews for four minutes in boiling water.');
    const { result } = await call(createVerificationAgent({ sourcesDir: dir }), { content, topic: 'tea', words: 50, passages: [] });
    const messages = result?.problems.map((p) => p.message) ?? [];
    expect(messages).toContainEqual(expect.stringMatching(/citation \[1\].*`outside-link\.md` is not a file in the sources/));
    expect(messages.some((m) => m.includes('[2]') && m.includes('inside-link.md') && /not a file|not supported/.test(m))).toBe(false);
  });

  it('verification refuses to read a cited file that is too large or binary', async () => {
    const content = '# T\n\n## S\n\nSomething [1]. Something else [2].\n\n## References\n\n[1] huge.md:1-1\n\n[2] random.md:1-1\n';
    const sources = await readCitedSources(dir, content);
    expect(sources.get('huge.md')).toBeNull();
    expect(sources.get('random.md')).toBeNull();
  });

  it('concord run warns, naming the file and the reason, and still writes from the readable notes', async () => {
    requireBuild();
    const cwd = await mkdtemp(join(tmpdir(), 'concord-sources-cli-'));
    try {
      const notes = join(cwd, 'notes');
      await mkdir(notes);
      for (const f of ['idempotency.md', 'delivery-guarantees.md', 'workflow-recovery.md'])
        await copyFile(join(SAMPLES, f), join(notes, f));
      await writeFile(join(notes, 'huge.md'), '# Huge\n');
      await truncate(join(notes, 'huge.md'), 600 * 1024 * 1024);
      await writeFile(join(notes, 'blob.md'), randomBytes(2048));
      const r = await runCli(
        ['run', 'Idempotency keys', '--sources', notes, '--state', 'memory://', '--words', '150', '--threshold', '0'],
        { cwd },
      );
      expect(r.stderr).toMatch(/warning: skipped source huge\.md: it is 600\.0 MB, over the 8\.0 MB limit/);
      expect(r.stderr).toMatch(/warning: skipped source blob\.md: it is not text/);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  }, 60_000);
});
