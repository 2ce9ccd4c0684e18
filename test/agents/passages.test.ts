import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { PassageIndex, loadSources, research, researchQueries, splitPassages } from '../../src/agents/passages.js';
import { SAMPLES } from './helpers.js';

describe('sources and passages', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'concord-sources-'));
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'b.md'), '# Bee\n\nBees make honey.\nThey live in hives.\n\n## Dance\n\nBees dance to point at flowers.\n');
    await writeFile(join(dir, 'sub', 'a.txt'), 'Ants build nests.\n\n\nAnts follow trails.');
    await writeFile(join(dir, 'ignored.json'), '{}');
    await writeFile(join(dir, '.hidden.md'), 'secret');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('loads .md and .txt files recursively, sorted by path, with / separators', async () => {
    const files = await loadSources(dir);
    expect(files.map((f) => f.path)).toEqual(['b.md', 'sub/a.txt']);
  });

  it('rejects a missing directory with a ValidationError naming it', async () => {
    await expect(loadSources(join(dir, 'nope'))).rejects.toThrow(ValidationError);
    await expect(loadSources(join(dir, 'nope'))).rejects.toThrow(/sourcesDir must be a directory/);
  });

  it('splits paragraphs with 1-based inclusive line ranges and their heading', () => {
    const passages = splitPassages({
      path: 'b.md',
      text: '---\ntitle: x\n---\n# Bee\n\nBees make honey.\nThey live in hives.\n\n```\ncode\n```\n## Dance\n\nBees dance.\n',
    });
    expect(passages).toEqual([
      {
        id: 'b.md:6',
        source: 'b.md',
        line: 6,
        endLine: 7,
        text: 'Bees make honey.\nThey live in hives.',
        score: 0,
        heading: 'Bee',
        title: 'Bee',
      },
      { id: 'b.md:14', source: 'b.md', line: 14, endLine: 14, text: 'Bees dance.', score: 0, heading: 'Dance', title: 'Bee' },
    ]);
  });

  it("gives every sample passage the exact text of its file's line range", async () => {
    const files = await loadSources(SAMPLES);
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) {
      const lines = (await readFile(join(SAMPLES, file.path), 'utf8')).split('\n');
      for (const p of splitPassages(file)) expect(lines.slice(p.line - 1, p.endLine).join('\n')).toBe(p.text);
    }
  });
});

describe('the passage index', () => {
  const passages = [
    { id: 'b.md:1', source: 'b.md', line: 1, endLine: 1, text: 'Queues deliver messages at least once.', score: 0 },
    { id: 'a.md:9', source: 'a.md', line: 9, endLine: 9, text: 'Queues deliver messages at least once.', score: 0 },
    { id: 'a.md:1', source: 'a.md', line: 1, endLine: 1, text: 'Workflows recover from crashes by replaying state.', score: 0 },
    { id: 'c.md:1', source: 'c.md', line: 1, endLine: 1, text: 'Delivery guarantees shape consumers.', score: 0, heading: 'Delivery' },
  ];
  const index = new PassageIndex(passages);

  it('ranks by relevance, matching word variants through the stemmer', () => {
    const hits = index.search('recovering workflow');
    expect(hits[0]?.id).toBe('a.md:1');
    expect(hits[0]?.score).toBeGreaterThan(0);
  });

  it('breaks ties by source path then line', () => {
    const hits = index.search('queues');
    expect(hits.map((h) => h.id)).toEqual(['a.md:9', 'b.md:1']);
  });

  it('finds nothing for stopwords alone and respects the limit', () => {
    expect(index.search('the of and')).toEqual([]);
    expect(index.search('queues delivery', 1)).toHaveLength(1);
  });

  it('merges the topic and each requirement round-robin without repeats', () => {
    expect(researchQueries({ topic: 't', requirements: ['a', 'b'] })).toEqual(['t', 'a', 'b']);
    expect(researchQueries({ topic: 't', requirements: ['a'], query: 'q' })).toEqual(['q']);
    const out = research(index, { topic: 'delivery', requirements: ['workflow crashes', 'queues'], limit: 3 });
    expect(out.map((p) => p.id)).toEqual(['c.md:1', 'a.md:1', 'a.md:9']);
    expect(new Set(research(index, { topic: 'queues delivery', requirements: ['queues'] }).map((p) => p.id)).size).toBe(3);
  });

  it('is deterministic: the same files and query give the same list', async () => {
    const files = await loadSources(SAMPLES);
    const a = research(PassageIndex.fromFiles(files), { topic: 'message delivery', requirements: ['leases'] });
    const b = research(PassageIndex.fromFiles([...files].reverse().reverse()), { topic: 'message delivery', requirements: ['leases'] });
    expect(a).toEqual(b);
    expect(a.length).toBeGreaterThan(0);
  });
});
