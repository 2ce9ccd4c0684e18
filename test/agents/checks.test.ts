import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Passage, VerificationTask } from '../../src/agents/payloads.js';
import { readCitedSources } from '../../src/agents/verification-agent.js';
import { headingCovers, lengthScore, verifyDocument, type SourceLines } from '../../src/agents/checks.js';

const FILE = [
  '# Queues', // 1
  '', // 2
  'A queue lets a slow agent fall behind', // 3
  'without stalling its producers.', // 4
  '', // 5
  'A lease hides a delivered message until the consumer acknowledges it.', // 6
  '', // 7
  'Retries are spaced with exponential backoff and random jitter.', // 8
];
const SOURCES: SourceLines = new Map([['q.md', FILE]]);
const P: Passage[] = [
  { id: 'q.md:3', source: 'q.md', line: 3, endLine: 4, score: 1, text: FILE.slice(2, 4).join('\n') },
  { id: 'q.md:6', source: 'q.md', line: 6, endLine: 6, score: 1, text: FILE[5] ?? '' },
  { id: 'q.md:8', source: 'q.md', line: 8, endLine: 8, score: 1, text: FILE[7] ?? '' },
];
const GOOD = `# Queues and leases

## Introduction

This document covers queues and leases. A queue lets a slow agent fall behind without stalling its producers [1].

## Leases

A lease hides a delivered message until the consumer acknowledges it [2]. Retries are spaced with exponential backoff and random jitter [3].

## References

[1] q.md:3-4

[2] q.md:6-6

[3] q.md:8-8
`;
const task = (content: string, extra: Partial<VerificationTask> = {}): VerificationTask => ({
  content,
  topic: 'Queues and leases',
  requirements: ['leases'],
  words: 40,
  passages: P,
  ...extra,
});

describe('verifyDocument', () => {
  it('gives a sound document full marks and no problems', () => {
    const result = verifyDocument(task(GOOD), SOURCES);
    expect(result).toEqual({
      score: 1,
      scores: { citations: 1, length: 1, coverage: 1, structure: 1, coherence: 1 },
      problems: [],
      words: 38,
      terms: ['queues', 'leases'],
    });
    expect(verifyDocument(task(GOOD)).score).toBe(1);
  });

  it('flags a sentence whose definite phrase nothing before it in the document introduces', () => {
    const dangling = GOOD.replace(
      'Retries are spaced with exponential backoff and random jitter [3].',
      'The backoff schedule spaces retries with random jitter [3].',
    );
    const { problems, scores } = verifyDocument(task(dangling), SOURCES);
    expect(problems.filter((p) => p.kind === 'coherence').map((p) => [p.section, p.message])).toEqual([
      [
        'Leases',
        "\"The backoff schedule spaces retries with random jitter.\" in 'Leases' speaks of 'The backoff schedule spaces' as if it were known, but nothing before it in the document introduces it",
      ],
    ]);
    expect(scores.coherence).toBeLessThan(1);
    // Introduced earlier in the document, by the section heading or by the topic: no problem.
    const introduced = GOOD.replace(
      'random jitter [3].',
      'random jitter [3]. The exponential backoff spaces retries [3]. The leases expire [2].',
    );
    expect(verifyDocument(task(introduced), SOURCES).problems.filter((p) => p.kind === 'coherence')).toEqual([]);
    const byTopic = GOOD.replace('This document covers queues and leases. A queue lets', 'This document covers these. The queue lets');
    expect(verifyDocument(task(byTopic), SOURCES).problems.filter((p) => p.kind === 'coherence')).toEqual([]);
  });

  it('names each broken citation, its section and its sentence', () => {
    const bad = GOOD.replace('producers [1]', 'producers [4]')
      .replace('jitter [3]', 'jitter [2]')
      .replace('[3] q.md:8-8', '[3] q.md:8-8\n\n[1] q.md:3-4\n\nsee the notes');
    const { problems, scores } = verifyDocument(task(bad), SOURCES);
    expect(problems.filter((p) => p.kind === 'citation').map((p) => [p.citation, p.section, p.message])).toEqual([
      [1, undefined, 'reference [1] is listed more than once in References'],
      [undefined, undefined, 'References line is not `[n] source:line-endLine`: `see the notes`'],
      [4, 'Introduction', "citation [4] in 'Introduction' has no entry in References"],
      [
        2,
        'Leases',
        `"Retries are spaced with exponential backoff and random jitter." in 'Leases' is not supported by [2] q.md:6-6: only 0% of its words are there`,
      ],
      [1, undefined, 'reference [1] is never cited in the text'],
      [3, undefined, 'reference [3] is never cited in the text'],
    ]);
    expect(problems.find((p) => p.citation === 4)?.sentence).toBe(
      'A queue lets a slow agent fall behind without stalling its producers [4].',
    );
    expect(scores.citations).toBeCloseTo(1 / 7, 4);
  });

  it('checks references against the files: missing files and lines out of range', () => {
    const bad = GOOD.replace('[2] q.md:6-6', '[2] q.md:6-60').replace('[3] q.md:8-8', '[3] gone.md:1-2');
    const sources = new Map([...SOURCES, ['gone.md', null]]);
    const messages = verifyDocument(task(bad), sources).problems.map((p) => p.message);
    expect(messages).toContain("citation [2] in 'Leases' points to lines 6-60 of `q.md`, which has 8 lines");
    expect(messages).toContain("citation [3] in 'Leases' points to gone.md:1-2, but `gone.md` is not a file in the sources");
    // Without the files, a reference must land inside a researched passage.
    const offPassage = verifyDocument(task(GOOD.replace('[3] q.md:8-8', '[3] q.md:7-8'))).problems;
    expect(offPassage[0]?.message).toBe("citation [3] in 'Leases' points to q.md:7-8, which is none of the researched passages");
  });

  it('flags a section that copies one passage', () => {
    const copy = GOOD.replace(
      'acknowledges it [2].',
      'acknowledges it [2]. A lease hides the message [2]. The consumer acknowledges the message [2].',
    );
    const { problems, scores } = verifyDocument(task(copy, { words: 50 }), SOURCES);
    // Five citation uses, all supported, one beyond the limit of two per passage per section.
    expect(scores.citations).toBe(0.8);
    expect(problems).toEqual([
      {
        kind: 'citation',
        citation: 2,
        section: 'Leases',
        message: "'Leases' takes 3 sentences from [2] q.md:6-6; use at most 2 from one passage per section and draw on other sources",
      },
    ]);
  });

  it('scores a document that cites nothing 0 on citations', () => {
    const { scores, problems } = verifyDocument(
      task('# Queues and leases\n\n## Leases\n\nQueues and leases exist.\n\n## References\n'),
      SOURCES,
    );
    expect(scores.citations).toBe(0);
    expect(problems.map((p) => p.message)).toContain('the document cites no sources: no sentence carries a [n] citation');
  });

  it('reports length against the target with the bounds', () => {
    const { problems, scores } = verifyDocument(task(GOOD, { words: 100 }), SOURCES);
    expect(problems).toEqual([
      { kind: 'length', expected: 100, actual: 38, message: 'the document is too short: 38 words, expected 100 ± 15% (85..115)' },
    ]);
    expect(scores.length).toBeCloseTo(1 - (0.62 - 0.15) * 2, 4);
    expect(lengthScore(100, 100)).toBe(1);
    expect(lengthScore(115, 100)).toBe(1);
    expect(lengthScore(200, 100)).toBe(0);
    expect(lengthScore(70, 100)).toBeCloseTo(0.7, 6);
  });

  it('counts a key term as covered only inside a cited sentence', () => {
    const { problems, scores } = verifyDocument(task(GOOD, { requirements: ['leases', 'backoff jitter', 'sharding'] }), SOURCES);
    expect(problems.filter((p) => p.kind === 'coverage')).toEqual([
      { kind: 'coverage', term: 'sharding', message: "key term 'sharding' appears in no cited sentence" },
    ]);
    // 'queues' appears in the uncited opening sentence and the title only: not covered.
    const uncovered = verifyDocument(task(GOOD.replace('A queue lets', 'One lets')), SOURCES).problems;
    expect(uncovered.find((p) => p.kind === 'coverage')).toMatchObject({ term: 'queues' });
    expect(scores.coverage).toBeCloseTo(4 / 5, 4);
  });

  it('checks structure: title, one H1, a section per requirement, cited sections, references, no repeats', () => {
    const broken = GOOD.replace('# Queues and leases\n\n', '')
      .replace('## Leases', '# Leases')
      .replace('## References\n\n[1] q.md:3-4\n\n[2] q.md:6-6\n\n[3] q.md:8-8\n', '')
      .replace('## Introduction', '## Introduction\n\nQueues help.\n\n## Empty\n\n## Uncited\n\nQueues, help!');
    const { problems, scores } = verifyDocument(task(broken, { requirements: ['leases', 'retries'] }), SOURCES);
    expect(problems.filter((p) => p.kind === 'structure').map((p) => p.message)).toEqual([
      "the document has no '# ' title as its first heading",
      "only the title may be a '# ' heading; also found 'Leases'",
      "no section covers the requirement 'retries'",
      "section 'Empty' is empty",
      "the document has no '## References' section",
    ]);
    const uncited = verifyDocument(task(GOOD.replace(' [2]. Retries', '. Retries').replace('jitter [3].', 'jitter.')), SOURCES).problems;
    expect(uncited.filter((p) => p.kind === 'structure')).toEqual([
      { kind: 'structure', section: 'Leases', message: "section 'Leases' cites no source" },
    ]);
    expect(problems.filter((p) => p.kind === 'repetition').map((p) => p.message)).toEqual([
      `"Queues, help!" in 'Uncited' repeats a sentence of 'Introduction'`,
    ]);
    expect(scores.structure).toBeCloseTo(4 / 10, 4);
  });

  it('matches requirement sections by their content words', () => {
    expect(headingCovers('Message delivery guarantees', 'guaranteed message delivery')).toBe(true);
    expect(headingCovers('Message delivery', 'message delivery guarantees')).toBe(false);
    expect(headingCovers('Anything', 'the of')).toBe(false);
  });

  it('never throws and keeps every score in [0, 1], whatever the text', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 400 }),
        fc.array(fc.constantFrom('# T', '## A', '[1]', '[2] q.md:3-4', 'Queues leases.', '\n\n', 'x [9].'), { maxLength: 30 }),
        (noise, parts) => {
          const result = verifyDocument(task(parts.join(' ') + noise), SOURCES);
          for (const s of [result.score, ...Object.values(result.scores)]) {
            expect(s).toBeGreaterThanOrEqual(0);
            expect(s).toBeLessThanOrEqual(1);
          }
          expect(result.problems.every((p) => p.message.length > 0)).toBe(true);
        },
      ),
    );
  });
});

describe('readCitedSources', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'concord-verify-'));
    await writeFile(join(dir, 'q.md'), FILE.join('\r\n'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads the cited files and refuses paths that leave the sources directory', async () => {
    const content = `${GOOD}\n[4] ../outside.md:1-1\n\n[5] /etc/passwd:1-1\n\n[6] missing.md:1-1\n`;
    const sources = await readCitedSources(dir, content);
    expect(sources.get('q.md')).toEqual(FILE);
    expect(sources.get('../outside.md')).toBeNull();
    expect(sources.get('/etc/passwd')).toBeNull();
    expect(sources.get('missing.md')).toBeNull();
  });
});
