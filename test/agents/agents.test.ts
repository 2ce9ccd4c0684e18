import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateAgentName } from '../../src/bus/agent.js';
import { ValidationError } from '../../src/errors.js';
import {
  DOCUMENT_AGENT_NAMES,
  createDocumentAgents,
  createEditingAgent,
  createResearchAgent,
  createVerificationAgent,
  createWritingAgent,
  type Passage,
  type ResearchResult,
  type WritingResult,
} from '../../src/agents/index.js';
import { REQUIREMENTS, SAMPLES, TOPIC, call } from './helpers.js';

describe('createDocumentAgents', () => {
  it('creates the four agents under their names, each a valid agent', () => {
    const agents = createDocumentAgents({ sourcesDir: SAMPLES });
    expect(Object.keys(agents)).toEqual([...DOCUMENT_AGENT_NAMES]);
    for (const [key, agent] of Object.entries(agents)) {
      expect(agent.name).toBe(key);
      expect(validateAgentName(agent.name)).toBe(key);
      expect(typeof agent.handleMessage).toBe('function');
    }
  });

  it('defaults to the sample notes shipped with the package', async () => {
    const { result } = await call(createDocumentAgents().research, { topic: 'idempotency keys' });
    expect(result?.passages[0]?.source).toBe('idempotency.md');
  });

  it('takes custom names', () => {
    expect(createWritingAgent({ name: 'writer-2' }).name).toBe('writer-2');
    expect(() => createEditingAgent({ name: 'bad name' })).toThrow(ValidationError);
  });
});

describe('research agent', () => {
  it('answers a task with ranked passages and what it indexed, and logs a debug line', async () => {
    const { result, ctx } = await call(createResearchAgent({ sourcesDir: SAMPLES }), {
      topic: TOPIC,
      requirements: REQUIREMENTS,
      limit: 5,
    });
    expect(result?.passages).toHaveLength(5);
    expect(result?.indexed.files).toBe(7);
    expect(result?.indexed.passages).toBeGreaterThan(30);
    for (const p of result?.passages ?? []) {
      expect(p.id).toBe(`${p.source}:${p.line}`);
      expect(p.score).toBeGreaterThan(0);
    }
    expect(ctx.debug).toHaveBeenCalledWith(expect.objectContaining({ topic: TOPIC, passages: 5 }), 'research: passages found');
  });

  it('rejects a malformed task with a ValidationError', async () => {
    await expect(call(createResearchAgent({ sourcesDir: SAMPLES }), { topic: 42 })).rejects.toThrow(
      'research task: topic must be a string, got `42`',
    );
  });

  it('ignores messages that are not tasks', async () => {
    const { result } = await call(createResearchAgent({ sourcesDir: SAMPLES }), { anything: true }, 'control');
    expect(result).toBeUndefined();
  });

  describe('over a directory that changes', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'concord-research-'));
      await writeFile(join(dir, 'a.md'), 'Leases expire after a while.\n');
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    it('keeps its index by default and re-reads the notes with cache: false', async () => {
      const cached = createResearchAgent({ sourcesDir: dir });
      const fresh = createResearchAgent({ sourcesDir: dir, cache: false });
      await call(cached, { topic: 'leases' });
      await writeFile(join(dir, 'b.md'), 'Leases can be extended by the consumer.\n');
      const a = (await call(cached, { topic: 'leases' })).result as ResearchResult;
      const b = (await call(fresh, { topic: 'leases' })).result as ResearchResult;
      expect(a.indexed.files).toBe(1);
      expect(b.indexed.files).toBe(2);
    });

    it('fails with a ValidationError when the directory is missing, and recovers once it exists', async () => {
      const missing = join(dir, 'later');
      const agent = createResearchAgent({ sourcesDir: missing });
      await expect(call(agent, { topic: 'leases' })).rejects.toThrow(ValidationError);
      const { mkdir } = await import('node:fs/promises');
      await mkdir(missing);
      await writeFile(join(missing, 'c.md'), 'Leases are leased.\n');
      expect(((await call(agent, { topic: 'leases' })).result as ResearchResult).indexed.files).toBe(1);
    });
  });
});

const PASSAGES: Passage[] = [
  {
    id: 'q.md:1',
    source: 'q.md',
    line: 1,
    endLine: 1,
    score: 2,
    text: 'A lease hides a delivered message until the consumer acknowledges it.',
  },
  { id: 'q.md:3', source: 'q.md', line: 3, endLine: 3, score: 1, text: 'Retries are spaced with exponential backoff and random jitter.' },
];

describe('writing agent', () => {
  it('writes a first draft for a TASK', async () => {
    const { result } = await call(createWritingAgent(), { topic: 'Leases', requirements: ['retries'], words: 50, passages: PASSAGES });
    expect(result?.content).toMatch(/^# Leases\n/);
    expect(result?.citations.map((c) => c.passageId).sort()).toEqual(['q.md:1', 'q.md:3']);
    expect(result?.revisions).toEqual([]);
  });

  it('revises on a FEEDBACK message and answers it with an explicit RESULT reply', async () => {
    const agent = createWritingAgent();
    const draft =
      '# Leases\n\n## Introduction\n\nA lease hides a delivered message until the consumer acknowledges it [1].\n\n## References\n\n[1] q.md:1-1\n';
    const payload = {
      topic: 'Leases',
      requirements: [],
      words: 50,
      passages: PASSAGES,
      draft,
      feedback: [{ kind: 'coverage', term: 'jitter', message: 'x' }],
    };
    const { result, ctx } = await call(agent, payload, 'feedback');
    expect(result?.content).toContain('Retries are spaced with exponential backoff and random jitter [2].');
    expect(ctx.replies).toEqual([result]);
    // The same payload as a TASK is answered through the return value alone.
    const asTask = await call(agent, payload, 'task');
    expect(asTask.result).toEqual(result);
    expect(asTask.ctx.replies).toEqual([]);
  });

  it('rejects a FEEDBACK message without a draft and feedback', async () => {
    await expect(call(createWritingAgent(), { topic: 'Leases', passages: PASSAGES }, 'feedback')).rejects.toThrow(
      'writing task: a FEEDBACK message must carry both `draft` and `feedback`',
    );
  });

  it('refuses to write without passages rather than invent', async () => {
    await expect(call(createWritingAgent(), { topic: 'Leases', passages: [] })).rejects.toThrow(ValidationError);
  });
});

describe('editing agent', () => {
  it('edits the content and reports its changes', async () => {
    const content = '# Leases\n\n## Leases And Locks.\n\nLeases expire [1]. Leases expire [1].\n\n## References\n\n[1] q.md:1-1\n';
    const { result } = await call(createEditingAgent(), { content, words: 50 });
    expect(result?.content).toBe('# Leases\n\n## Leases and locks\n\nLeases expire [1].\n\n## References\n\n[1] q.md:1-1\n');
    expect(result?.changes).toHaveLength(2);
    expect(result?.words).toBe(2);
  });

  it('rejects a malformed task', async () => {
    await expect(call(createEditingAgent(), { content: '# x', words: 'many' })).rejects.toThrow(
      "editing task: words must be an integer 50..20000, got the string `'many'`",
    );
  });
});

describe('verification agent', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'concord-verification-'));
    await writeFile(join(dir, 'q.md'), `${PASSAGES[0]?.text}\n\n${PASSAGES[1]?.text}\n`);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('checks citations against the files on disk when given a sources directory', async () => {
    const draft = (await call(createWritingAgent(), { topic: 'Leases', requirements: ['retries'], words: 50, passages: PASSAGES }))
      .result as WritingResult;
    const task = { content: draft.content, topic: 'Leases', requirements: ['retries'], words: 50, passages: PASSAGES };
    const onDisk = await call(createVerificationAgent({ sourcesDir: dir }), task);
    expect(onDisk.result?.scores.citations).toBe(1);
    await writeFile(join(dir, 'q.md'), 'The file changed since research.\n\nNothing about leases now.\n');
    const changed = await call(createVerificationAgent({ sourcesDir: dir }), task);
    expect(changed.result?.scores.citations).toBe(0);
    expect(changed.result?.problems[0]?.message).toMatch(/is not supported by \[1\] q\.md:1-1/);
    // Without a sources directory it trusts the passages it was given.
    expect((await call(createVerificationAgent(), task)).result?.scores.citations).toBe(1);
  });

  it('rejects a malformed task', async () => {
    await expect(call(createVerificationAgent(), { content: 'x', topic: 'Leases', passages: 'none' })).rejects.toThrow(
      "verification task: passages must be an array of passages, got the string `'none'`",
    );
  });
});
