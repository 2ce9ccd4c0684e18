import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createDocumentAgents,
  type EditingResult,
  type Passage,
  type ResearchResult,
  type VerificationResult,
  type WritingResult,
} from '../../src/agents/index.js';
import { documentSentences, formatReference, parseDocument } from '../../src/agents/markdown.js';
import { citationNumbers, stripCitations, support } from '../../src/agents/text.js';
import { REQUIREMENTS, SAMPLES, TOPIC, call } from './helpers.js';

const WORDS = 400;

interface Round {
  written: WritingResult;
  edited: EditingResult;
  verified: VerificationResult;
}

/** research → writing → editing → verification, then revisions fed by verification, as the orchestrator runs it. */
async function pipeline(
  maxIterations = 3,
  damage: (draft: string) => string = (d) => d,
): Promise<{ passages: Passage[]; rounds: Round[] }> {
  const agents = createDocumentAgents({ sourcesDir: SAMPLES });
  const { passages } = (await call(agents.research, { topic: TOPIC, requirements: REQUIREMENTS })).result as ResearchResult;
  const rounds: Round[] = [];
  let written = (await call(agents.writing, { topic: TOPIC, requirements: REQUIREMENTS, words: WORDS, passages })).result as WritingResult;
  written = { ...written, content: damage(written.content) };
  for (let i = 0; i < maxIterations; i++) {
    const edited = (await call(agents.editing, { content: written.content, words: WORDS, topic: TOPIC, requirements: REQUIREMENTS }))
      .result as EditingResult;
    const verified = (
      await call(agents.verification, { content: edited.content, topic: TOPIC, requirements: REQUIREMENTS, words: WORDS, passages })
    ).result as VerificationResult;
    rounds.push({ written, edited, verified });
    if (verified.problems.length === 0) break;
    written = (
      await call(
        agents.writing,
        { topic: TOPIC, requirements: REQUIREMENTS, words: WORDS, passages, draft: edited.content, feedback: verified.problems },
        'feedback',
      )
    ).result as WritingResult;
  }
  return { passages, rounds };
}

/** Every cited sentence, with the text of the file lines its reference names. */
async function citedEvidence(content: string): Promise<{ sentence: string; n: number; lines: string | undefined }[]> {
  const doc = parseDocument(content);
  const out: { sentence: string; n: number; lines: string | undefined }[] = [];
  for (const s of documentSentences(doc)) {
    for (const n of citationNumbers(s.text)) {
      const ref = doc.references.find((r) => r.n === n);
      const lines = ref
        ? (await readFile(join(SAMPLES, ref.source), 'utf8'))
            .split('\n')
            .slice(ref.line - 1, ref.endLine)
            .join('\n')
        : undefined;
      out.push({ sentence: s.text, n, lines });
    }
  }
  return out;
}

describe('the document pipeline on the sample notes', () => {
  it('resolves every citation of every round to the source lines that say it', async () => {
    const { rounds } = await pipeline();
    for (const round of rounds) {
      const evidence = await citedEvidence(round.edited.content);
      expect(evidence.length).toBeGreaterThan(5);
      for (const { sentence, n, lines } of evidence) {
        expect(lines, `[${n}] resolves`).toBeDefined();
        expect(lines?.trim()).not.toBe('');
        // Quoted, not paraphrased: the sentence is in the cited lines word for word.
        expect((lines ?? '').replace(/\s+/g, ' ')).toContain(stripCitations(sentence));
        expect(support(sentence, lines ?? '')).toBe(1);
      }
    }
  });

  it('keeps the reference list complete: numbered 1..k, each cited, each citation listed', async () => {
    const { rounds } = await pipeline();
    for (const { edited, written } of rounds) {
      const doc = parseDocument(edited.content);
      const cited = new Set(documentSentences(doc).flatMap((s) => citationNumbers(s.text)));
      const listed = doc.references.map((r) => r.n);
      expect(listed).toEqual(listed.map((_, i) => i + 1));
      expect([...cited].sort((a, b) => a - b)).toEqual(listed);
      expect(doc.malformedReferences).toEqual([]);
      expect(written.citations.length).toBeGreaterThan(0);
    }
  });

  it('scores in [0, 1], and feeding the problems back never lowers the score', async () => {
    // The first draft of the sample topic is clean now, so the loop is exercised on a draft with a
    // reader's problems put in: a paragraph opening with a dangling connective, a conclusion with a new fact.
    const clean = await pipeline();
    expect(clean.rounds).toHaveLength(1);
    expect(clean.rounds[0]?.verified.problems).toEqual([]);
    const { rounds } = await pipeline(3, (draft) =>
      draft
        .replace(/(## Message delivery guarantees\n\n)/u, '$1These therefore decide how agents must be written.\n\n')
        .replace(/(## Conclusion\n\n)/u, '$1Backpressure slows producers down when a queue fills up [1].\n\n'),
    );
    const scores = rounds.map((r) => r.verified.score);
    for (const r of rounds) {
      for (const s of [r.verified.score, ...Object.values(r.verified.scores)]) {
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(1);
      }
    }
    for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeGreaterThanOrEqual(scores[i - 1] ?? 0);
    // The revision loop is exercised on the sample topic, acts on what it was told, and converges.
    expect(rounds.length).toBeGreaterThan(1);
    expect(rounds[1]?.written.revisions.length).toBeGreaterThan(0);
    expect(rounds.at(-1)?.verified.problems).toEqual([]);
    expect(rounds.at(-1)?.verified.score).toBe(1);
  });

  it('covers the title, every requirement and the references in the final document', async () => {
    const { rounds } = await pipeline();
    const doc = parseDocument(rounds.at(-1)?.edited.content ?? '');
    expect(doc.title).toBe('Reliable coordination of multi-agent systems');
    expect(doc.sections.map((s) => s.heading)).toEqual([
      'Introduction',
      'Message delivery guarantees',
      'Shared document state',
      'Workflow recovery',
      'Conclusion',
    ]);
    expect(rounds.at(-1)?.verified.terms).toEqual([
      'reliable',
      'coordination',
      'multi-agent',
      'systems',
      'message',
      'delivery',
      'guarantees',
      'shared',
      'document',
      'state',
      'workflow',
      'recovery',
    ]);
  });

  it('is deterministic: the same inputs give byte-identical documents and scores', async () => {
    const a = await pipeline();
    const b = await pipeline();
    expect(b).toEqual(a);
  });

  it('catches a tampered reference in the final document', async () => {
    const { passages, rounds } = await pipeline();
    const content = rounds.at(-1)?.edited.content ?? '';
    const doc = parseDocument(content);
    const first = doc.references[0];
    const other = doc.references.find((r) => r.source !== first?.source);
    expect(first && other).toBeTruthy();
    const tampered = content.replace(formatReference(first!), formatReference({ ...other!, n: 1 }));
    expect(tampered).not.toBe(content);
    const agents = createDocumentAgents({ sourcesDir: SAMPLES });
    const { result } = await call(agents.verification, {
      content: tampered,
      topic: TOPIC,
      requirements: REQUIREMENTS,
      words: WORDS,
      passages,
    });
    expect(result?.score).toBeLessThan(1);
    expect(result?.problems.some((p) => p.kind === 'citation' && p.citation === 1 && /is not supported by \[1\]/.test(p.message))).toBe(
      true,
    );
  });
});
