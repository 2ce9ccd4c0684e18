/**
 * The documents held to a reader's standard: built from the bundled samples and from a second set
 * of notes on another subject (samples/tea), then checked structurally, independently of the
 * verification agent's own rules; and a topic the notes do not cover fails verification.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createDocumentAgents,
  parseDocument,
  type EditingResult,
  type ResearchResult,
  type VerificationResult,
  type WritingResult,
} from '../../src/agents/index.js';
import { MessageBus } from '../../src/bus/bus.js';
import { defineAgent, type Agent, type AgentContext } from '../../src/bus/agent.js';
import type { Message } from '../../src/message.js';
import { StateManager } from '../../src/state/index.js';
import { Orchestrator } from '../../src/workflow/orchestrator.js';
import { documentPipeline } from '../../src/workflow/document-pipeline.js';
import { SAMPLES, call } from './helpers.js';

const TEA = join(SAMPLES, '..', 'tea');

/** research → writing → editing → verification with up to two revisions, as the pipeline runs it. */
async function write(sourcesDir: string, topic: string, requirements: string[], words: number) {
  const agents = createDocumentAgents({ sourcesDir });
  const { passages } = (await call(agents.research, { topic, ...(requirements.length ? { requirements } : {}) })).result as ResearchResult;
  let written = (await call(agents.writing, { topic, requirements, words, passages })).result as WritingResult;
  let content = '';
  let verified: VerificationResult | undefined;
  for (let round = 0; round < 3; round++) {
    content = ((await call(agents.editing, { content: written.content, words, topic, requirements })).result as EditingResult).content;
    verified = (await call(agents.verification, { content, topic, requirements, words, passages })).result as VerificationResult;
    if (verified.score >= 0.8) break;
    written = (
      await call(agents.writing, { topic, requirements, words, passages, draft: content, feedback: verified.problems }, 'feedback')
    ).result as WritingResult;
  }
  return { content, verified: verified as VerificationResult };
}

// Openers a reader stumbles on at the start of a paragraph: they point back at nothing.
const DANGLING =
  /^(?:this|these|those|that|they|them|it|its|their|such|both|however|therefore|thus|hence|moreover|furthermore|also|instead|then|so|but|and|yet|likewise|similarly|consequently)\b|^(?:\S+\s+){0,7}?(?:therefore|thus|hence|consequently)\b/iu;
const SELF = /^this document\b/iu;
// Words a summary frames with; everything else in the conclusion must be in the body.
const FRAMING = new Set(
  'taken together covered cover covers here parts part these notes describe section sections stressed covered document'.split(' '),
);
const wordsOf = (text: string): string[] =>
  text
    .toLowerCase()
    .replace(/\[\d+(?:,\s*\d+)*\]/g, '')
    .match(/[a-z][a-z-]{3,}/g) ?? [];

/** Every structural problem a reader would find, as sentences; empty when the document holds up. */
function readerProblems(markdown: string, sourcesDir: string): string[] {
  const doc = parseDocument(markdown);
  const problems: string[] = [];
  if (doc.title === null) problems.push('no title');
  if (doc.sections.length < 3) problems.push(`only ${doc.sections.length} sections`);
  for (const s of doc.sections) {
    if (s.paragraphs.join('').trim() === '') problems.push(`section '${s.heading}' is empty`);
    for (const p of s.paragraphs) {
      const opening = p.trim();
      if (!SELF.test(opening) && DANGLING.test(opening))
        problems.push(`a paragraph of '${s.heading}' opens with a dangling connective: ${opening.slice(0, 60)}`);
    }
  }
  if (doc.references.length === 0) problems.push('no references');
  const headingsOf = new Map<string, string[]>();
  for (const ref of doc.references) {
    const lines = readFileSync(join(sourcesDir, ref.source), 'utf8').split('\n');
    const headings = lines.filter((l) => /^#{1,6}\s/.test(l)).map((l) => l.replace(/^#+\s+/, '').trim());
    headingsOf.set(ref.source, headings);
    if (!ref.title) problems.push(`reference [${ref.n}] names no title`);
    else if (ref.title !== headings[0])
      problems.push(`reference [${ref.n}] is titled '${ref.title}', but ${ref.source} is headed '${headings[0]}'`);
  }
  const conclusion = doc.sections.at(-1);
  if (conclusion?.heading !== 'Conclusion') problems.push('no conclusion');
  else {
    const body = [
      doc.title ?? '',
      ...doc.sections.slice(0, -1).flatMap((s) => [s.heading, ...s.paragraphs]),
      ...[...headingsOf.values()].flat(),
    ].join(' ');
    const known = new Set(wordsOf(body));
    for (const p of conclusion.paragraphs) {
      if (/\[\d+/.test(p)) problems.push(`the conclusion cites a source: ${p.slice(0, 60)}`);
      const fresh = wordsOf(p).filter((w) => !known.has(w) && !FRAMING.has(w));
      if (fresh.length) problems.push(`the conclusion says what the body did not: ${fresh.join(', ')}`);
    }
  }
  return problems;
}

describe("documents held to a reader's standard", () => {
  it('the bundled samples: reliable coordination, with requirements', async () => {
    const { content, verified } = await write(
      SAMPLES,
      'Reliable coordination of multi-agent systems',
      ['delivery guarantees', 'idempotency', 'workflow recovery', 'observability'],
      600,
    );
    expect(readerProblems(content, SAMPLES)).toEqual([]);
    expect(verified.score).toBeGreaterThanOrEqual(0.8);
    expect(verified.problems.filter((p) => p.kind === 'coherence' || p.kind === 'topic')).toEqual([]);
  });

  it('a second subject: notes on tea, sections drawn from their own headings', async () => {
    const { content, verified } = await write(TEA, 'Brewing tea', [], 400);
    expect(readerProblems(content, TEA)).toEqual([]);
    expect(verified.score).toBeGreaterThanOrEqual(0.8);
    const doc = parseDocument(content);
    // Sections come from the notes' own headings, framed by an introduction and a conclusion.
    const headings =
      readFileSync(join(TEA, 'steeping-time.md'), 'utf8') +
      readFileSync(join(TEA, 'water-temperature.md'), 'utf8') +
      readFileSync(join(TEA, 'tea-types.md'), 'utf8') +
      readFileSync(join(TEA, 'leaf-ratio.md'), 'utf8') +
      readFileSync(join(TEA, 'storage.md'), 'utf8');
    for (const s of doc.sections.slice(1, -1)) expect(headings.toLowerCase()).toContain(`# ${s.heading.toLowerCase()}`);
  });

  it('a topic the notes do not cover fails verification with a problem that says so', async () => {
    const { verified } = await write(TEA, 'Brewing coffee', [], 400);
    expect(verified.score).toBeLessThan(0.8);
    const topic = verified.problems.find((p) => p.kind === 'topic');
    expect(topic?.message).toMatch(/^the sources do not cover the topic 'Brewing coffee': 'coffee' is mentioned only in passing/);
  });

  it('the pipeline stops revising a mismatched topic at once, and keeps the verdict with the draft it judged', async () => {
    const bus = new MessageBus();
    const state = new StateManager();
    for (const agent of Object.values(createDocumentAgents({ sourcesDir: TEA }))) bus.registerAgent(agent.name, agent);
    try {
      const outcome = await new Orchestrator({ bus, state, definition: documentPipeline({ maxIterations: 3 }) }).start({
        topic: 'Brewing coffee',
        input: { words: 400 },
      });
      expect(outcome.status).toBe('completed');
      expect(outcome.accepted).toBe(false);
      expect(outcome.iterations).toBe(1);
      expect(outcome.data.stopped).toEqual({
        stage: 'verification',
        iteration: 1,
        reason: 'the sources do not cover the topic, and no rewrite can change that',
      });
      const [verdict] = outcome.data.judgements ?? [];
      const writingVersion = outcome.data.outputs['writing']?.version;
      const editingVersion = outcome.data.outputs['editing']?.version;
      expect(verdict?.draftVersion).toBe(editingVersion ?? writingVersion);
      expect((verdict?.problems ?? []).some((p) => (p as { kind: string }).kind === 'topic')).toBe(true);
    } finally {
      await bus.close();
      await state.close();
    }
  });

  it('a revision round that cannot change the draft ends the loop early, with the reason recorded', async () => {
    const bus = new MessageBus();
    const state = new StateManager();
    const agents = createDocumentAgents({ sourcesDir: SAMPLES });
    // A writer that cannot act on feedback (hands the draft back as it was) and a verifier never satisfied.
    const stuck = defineAgent({
      name: 'writing',
      async handleMessage(msg: Message, ctx: AgentContext) {
        if (msg.type !== 'feedback') return agents.writing.handleMessage(msg, ctx);
        const draft = String((msg.payload as { draft: string }).draft);
        await ctx.reply({
          content: draft,
          citations: parseDocument(draft).references.map((r) => ({
            n: r.n,
            passageId: `${r.source}:${r.line}`,
            source: r.source,
            line: r.line,
            endLine: r.endLine,
          })),
          revisions: [],
        });
        return undefined;
      },
    });
    const strict = defineAgent({
      name: 'verification',
      handleMessage: () => ({
        score: 0.5,
        scores: { citations: 0.5, length: 0.5, coverage: 0.5, structure: 0.5, coherence: 0.5 },
        problems: [{ kind: 'coverage', term: 'backpressure', message: "key term 'backpressure' appears in no cited sentence" }],
        words: 400,
        terms: ['backpressure'],
      }),
    });
    for (const agent of [agents.research, stuck, agents.editing, strict]) bus.registerAgent(agent.name, agent as Agent);
    try {
      const outcome = await new Orchestrator({ bus, state, definition: documentPipeline({ maxIterations: 5 }) }).start({
        topic: 'Reliable coordination of multi-agent systems',
        input: { words: 400 },
      });
      expect(outcome.status).toBe('completed');
      expect(outcome.accepted).toBe(false);
      expect(outcome.iterations).toBe(2);
      expect(outcome.data.stopped).toEqual({
        stage: 'writing',
        iteration: 2,
        reason: 'the writer could not change the draft on the 1 problem verification sent back',
      });
      // The unchanged revision wrote no version: one writing version in all.
      const history = await state.getStateHistory(outcome.documentId);
      expect(history.filter((h) => h.actor === 'writing')).toHaveLength(1);
      expect(outcome.data.judgements?.map((j) => j.iteration)).toEqual([1, 2]);
    } finally {
      await bus.close();
      await state.close();
    }
  });
});
