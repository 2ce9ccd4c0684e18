import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildOutline,
  candidateSentences,
  closingSentence,
  composeDocument,
  leansOnContext,
  openingSentence,
} from '../../src/agents/compose.js';
import { reviseDocument } from '../../src/agents/revise.js';
import { documentSentences, documentWords, parseDocument } from '../../src/agents/markdown.js';
import type { Passage, WritingTask } from '../../src/agents/payloads.js';
import { PassageIndex, loadSources, research } from '../../src/agents/passages.js';
import { citationNumbers, contentStems, stem, stripCitations } from '../../src/agents/text.js';
import { REQUIREMENTS, SAMPLES, TOPIC } from './helpers.js';

const flat = (s: string): string => s.replace(/\s+/g, ' ');

let passages: Passage[];
let task: WritingTask;
beforeAll(async () => {
  passages = research(PassageIndex.fromFiles(await loadSources(SAMPLES)), { topic: TOPIC, requirements: REQUIREMENTS });
  task = { topic: TOPIC, requirements: REQUIREMENTS, words: 400, passages };
});

/** Asserts that every cited sentence is quoted from the passage its reference names. */
function expectQuotedFromSources(content: string, material: readonly Passage[]): void {
  const doc = parseDocument(content);
  for (const s of documentSentences(doc)) {
    for (const n of citationNumbers(s.text)) {
      const ref = doc.references.find((r) => r.n === n);
      expect(ref, `reference [${n}]`).toBeDefined();
      const passage = material.find((p) => p.source === ref?.source && p.line === ref?.line && p.endLine === ref?.endLine);
      expect(passage, `passage for [${n}]`).toBeDefined();
      expect(flat(passage?.text ?? '')).toContain(stripCitations(s.text));
    }
  }
}

describe('outline', () => {
  it('plans an introduction, one section per requirement and a conclusion, splitting the word target', () => {
    const outline = buildOutline(TOPIC, REQUIREMENTS, [], 400);
    expect(outline.title).toBe('Reliable coordination of multi-agent systems');
    expect(outline.sections.map((s) => s.heading)).toEqual([
      'Introduction',
      'Message delivery guarantees',
      'Shared document state',
      'Workflow recovery',
      'Conclusion',
    ]);
    const total = outline.sections.reduce((n, s) => n + s.budget, 0);
    expect(Math.abs(total - 400)).toBeLessThanOrEqual(3);
    expect([...(outline.sections[1]?.query.primary ?? [])]).toEqual(['messag', 'deliv', 'guarant']);
  });

  it('takes its themes from the passages when there are no requirements', () => {
    const outline = buildOutline(
      'Queues',
      [],
      [
        { id: 'a:1', source: 'a', line: 1, endLine: 1, text: 'x', score: 1, heading: 'Leases and acknowledgements' },
        { id: 'a:3', source: 'a', line: 3, endLine: 3, text: 'y', score: 1, heading: 'Leases and acknowledgements' },
        { id: 'b:1', source: 'b', line: 1, endLine: 1, text: 'z', score: 1, heading: 'Dead letters' },
      ],
      300,
    );
    expect(outline.sections.map((s) => s.heading)).toEqual(['Introduction', 'Leases and acknowledgements', 'Dead letters', 'Conclusion']);
  });

  it('frames the introduction and conclusion from the inputs', () => {
    expect(openingSentence(TOPIC, REQUIREMENTS)).toBe(
      'This document covers reliable coordination of multi-agent systems: message delivery guarantees, shared document state and workflow recovery.',
    );
    expect(closingSentence('Queues', [])).toBe('Taken together, these notes describe queues.');
  });
});

describe('candidate sentences', () => {
  it('quotes a sentence opening with a definite phrase only with what introduces it', () => {
    const p: Passage = {
      id: 'b:1',
      source: 'b',
      line: 1,
      endLine: 4,
      score: 1,
      heading: 'Delivery',
      text: [
        'Agents in a multi-agent system rarely call each other directly.',
        'They exchange messages through a queue or a bus, so a crash does not stall the sender.',
        'The queue decouples producers from consumers in time, so work can wait.',
        'A lease hides a message from other consumers for a while.',
        'The lease runs out when the consumer crashes before it acknowledges.',
        'The delivery attempt counter tells the next consumer about the redelivery.',
      ].join('\n'),
    };
    expect(candidateSentences([p]).map((c) => c.parts)).toEqual([
      ['Agents in a multi-agent system rarely call each other directly.'],
      [
        'Agents in a multi-agent system rarely call each other directly.',
        'They exchange messages through a queue or a bus, so a crash does not stall the sender.',
      ],
      // "The queue..." is dropped: the sentence before it leans itself, and it alone would dangle.
      ['A lease hides a message from other consumers for a while.'],
      ['A lease hides a message from other consumers for a while.', 'The lease runs out when the consumer crashes before it acknowledges.'],
      // Introduced by the passage's heading: stands on its own.
      ['The delivery attempt counter tells the next consumer about the redelivery.'],
    ]);
  });

  it('keeps complete sentences that stand on their own, and one that leans on the sentence before only together with it', () => {
    const p: Passage = {
      id: 'a:1',
      source: 'a',
      line: 1,
      endLine: 2,
      score: 1,
      text: 'A lease hides a message from other consumers for a while.\nThey retry later with a growing delay each time.\nToo short here.\nA sentence that never comes to an end',
    };
    const candidates = candidateSentences([p, { ...p, id: 'a:9', line: 9, endLine: 10 }]);
    expect(candidates.map((c) => c.parts)).toEqual([
      ['A lease hides a message from other consumers for a while.'],
      ['A lease hides a message from other consumers for a while.', 'They retry later with a growing delay each time.'],
    ]);
    expect(candidates.every((c) => c.passage.id === 'a:1')).toBe(true);
    expect(leansOnContext('Most reliable systems therefore choose at-least-once delivery.')).toBe(true);
    expect(leansOnContext('Messages that expire belong there as well.')).toBe(true);
    expect(leansOnContext('This document covers queues.')).toBe(false);
    expect(leansOnContext('This keeps order.')).toBe(true);
    expect(leansOnContext('Thistles grow.')).toBe(false);
  });
});

describe('first draft', () => {
  it('quotes every cited sentence from the passage its reference names', () => {
    expectQuotedFromSources(composeDocument(task).content, passages);
  });

  it('has a title, the planned sections and a reference list numbered by first appearance', () => {
    const { content, citations } = composeDocument(task);
    const doc = parseDocument(content);
    expect(doc.title).toBe('Reliable coordination of multi-agent systems');
    expect(doc.sections.map((s) => s.heading)).toEqual([
      'Introduction',
      ...REQUIREMENTS.map((r) => r[0]?.toUpperCase() + r.slice(1)),
      'Conclusion',
    ]);
    expect(doc.referencesHeading).toBe('References');
    const order: number[] = [];
    for (const s of documentSentences(doc)) for (const n of citationNumbers(s.text)) if (!order.includes(n)) order.push(n);
    expect(order).toEqual(order.map((_, i) => i + 1));
    expect(citations.map((c) => c.n)).toEqual(order);
    for (const c of citations) expect(passages.some((p) => p.id === c.passageId && p.endLine === c.endLine)).toBe(true);
  });

  it('cites every sentence except the framing ones and the summary in the conclusion, and lands near the word target', () => {
    const doc = parseDocument(composeDocument(task).content);
    const uncited = documentSentences(doc).filter((s) => citationNumbers(s.text).length === 0);
    expect(uncited.slice(0, 2).map((s) => s.text)).toEqual([openingSentence(TOPIC, REQUIREMENTS), closingSentence(TOPIC, REQUIREMENTS)]);
    // The rest sums up the body in the conclusion: one sentence per body section, nothing cited.
    expect(uncited.length).toBeGreaterThan(2);
    for (const s of uncited.slice(2)) {
      expect(s.heading).toBe('Conclusion');
      expect(s.text).toMatch(/^The section on [a-z].* (covered|came back to) /);
    }
    expect(documentWords(doc)).toBeGreaterThan(300);
    expect(documentWords(doc)).toBeLessThan(500);
  });

  it('is deterministic', () => {
    expect(composeDocument(task)).toEqual(composeDocument(structuredClone(task)));
  });
});

// A draft written by hand against three small passages, so each revision is exact.
const P: Passage[] = [
  {
    id: 'q.md:3',
    source: 'q.md',
    line: 3,
    endLine: 4,
    score: 3,
    heading: 'Queues',
    text: 'A queue lets a slow agent fall behind without stalling its producers.\nA bounded queue pushes back on producers when it is full.',
  },
  {
    id: 'q.md:6',
    source: 'q.md',
    line: 6,
    endLine: 6,
    score: 2,
    heading: 'Leases',
    text: 'A lease hides a delivered message until the consumer acknowledges it. An expired lease makes the queue deliver the message again. Every redelivery increments the attempt counter of the message.',
  },
  {
    id: 'r.md:1',
    source: 'r.md',
    line: 1,
    endLine: 3,
    score: 1,
    heading: 'Retries',
    text: 'Retries are spaced with exponential backoff and random jitter.\nAfter the last attempt a message moves to the dead-letter queue.\nA consumer can extend its lease while it works on a long task.',
  },
];
const DRAFT = `# Queues

## Introduction

A queue lets a slow agent fall behind without stalling its producers [1].

## Leases

A lease hides a delivered message until the consumer acknowledges it [2].

## References

[1] q.md:3-4

[2] q.md:6-6
`;
const base: WritingTask = { topic: 'Queues', requirements: ['leases'], words: 60, passages: P, draft: DRAFT };

describe('revision', () => {
  it('covers a missing term with a cited source sentence, leaving the rest of the draft as it was', () => {
    const out = reviseDocument({
      ...base,
      feedback: [{ kind: 'coverage', term: 'jitter', message: "key term 'jitter' appears in no cited sentence" }],
    });
    expect(out.content).toContain('Retries are spaced with exponential backoff and random jitter [3].');
    expect(out.content).toContain('[3] r.md:1-3');
    expect(out.content.replace(/ Retries are spaced[^\n]*|\n\n\[3\][^\n]*/g, '')).toBe(DRAFT);
    expect(out.revisions).toEqual([expect.stringMatching(/^covered 'jitter' in 'Introduction'/)]);
    expectQuotedFromSources(out.content, P);
  });

  it('never invents: a term no passage mentions stays uncovered and the draft unchanged', () => {
    const out = reviseDocument({ ...base, feedback: [{ kind: 'coverage', term: 'encryption', message: 'x' }] });
    expect(out.content).toBe(DRAFT);
    expect(out.revisions).toEqual(["no passage mentions 'encryption': left uncovered rather than invent it"]);
  });

  it('re-cites a sentence whose citation points at the wrong passage, and removes one nothing supports', () => {
    const draft = DRAFT.replace('acknowledges it [2]', 'acknowledges it [1]').replace(
      '## Leases\n\n',
      '## Leases\n\nQueues encrypt every message with a rotating key [2].\n\n',
    );
    const out = reviseDocument({
      ...base,
      draft,
      feedback: [
        {
          kind: 'citation',
          citation: 1,
          section: 'Leases',
          sentence: 'A lease hides a delivered message until the consumer acknowledges it [1].',
          message: 'unsupported',
        },
        { kind: 'citation', citation: 2, message: 'unsupported' },
      ],
    });
    expect(out.content).toContain('A lease hides a delivered message until the consumer acknowledges it [2].');
    expect(out.content).not.toContain('encrypt');
    expect(out.content).toContain('A queue lets a slow agent fall behind without stalling its producers [1].');
    expectQuotedFromSources(out.content, P);
  });

  it('drops a reference nothing cites and renumbers without gaps', () => {
    const draft = DRAFT.replace('[2] q.md:6-6', '[2] q.md:6-6\n\n[3] r.md:1-3');
    const out = reviseDocument({ ...base, draft, feedback: [{ kind: 'citation', citation: 3, message: 'reference [3] is never cited' }] });
    expect(out.content).toBe(DRAFT);
    expect(out.citations.map((c) => c.n)).toEqual([1, 2]);
  });

  it('lengthens a short draft from unused material and shortens a long one', () => {
    const longer = reviseDocument({ ...base, words: 80, feedback: [{ kind: 'length', expected: 80, actual: 26, message: 'too short' }] });
    expect(documentWords(parseDocument(longer.content))).toBeGreaterThan(documentWords(parseDocument(DRAFT)));
    expectQuotedFromSources(longer.content, P);
    const shorter = reviseDocument({
      ...base,
      draft: longer.content,
      words: 50,
      feedback: [{ kind: 'length', expected: 50, message: 'too long' }],
    });
    expect(documentWords(parseDocument(shorter.content))).toBeLessThanOrEqual(Math.floor(50 * 1.15));
    expect(documentWords(parseDocument(shorter.content))).toBeGreaterThanOrEqual(Math.ceil(50 * 0.85));
  });

  it('removes a repeated sentence', () => {
    const draft = DRAFT.replace(
      'acknowledges it [2].',
      'acknowledges it [2]. A lease hides the delivered message until the consumer acknowledges it [2].',
    );
    const out = reviseDocument({
      ...base,
      draft,
      feedback: [
        { kind: 'repetition', sentence: 'A lease hides the delivered message until the consumer acknowledges it [2].', message: 'repeat' },
      ],
    });
    expect(out.content).toBe(DRAFT);
  });

  it('adds a missing section before the conclusion, written from the passages', () => {
    const draft = DRAFT.replace(
      '## References',
      '## Conclusion\n\nA bounded queue pushes back on producers when it is full [1].\n\n## References',
    );
    const out = reviseDocument({
      ...base,
      draft,
      requirements: ['leases', 'retries'],
      feedback: [{ kind: 'structure', section: 'retries', message: "no section covers the requirement 'retries'" }],
    });
    const doc = parseDocument(out.content);
    expect(doc.sections.map((s) => s.heading)).toEqual(['Introduction', 'Leases', 'Retries', 'Conclusion']);
    expect(doc.sections[2]?.paragraphs.join(' ')).toMatch(/Retries are spaced with exponential backoff and random jitter \[3\]\./);
    expectQuotedFromSources(out.content, P);
  });

  it('thins a section that copies one passage, replacing the surplus from other sources', () => {
    const draft = DRAFT.replace(
      'acknowledges it [2].',
      'acknowledges it [2]. An expired lease makes the queue deliver the message again [2]. Every redelivery increments the attempt counter of the message [2].',
    );
    const out = reviseDocument({
      ...base,
      draft,
      feedback: [{ kind: 'citation', citation: 2, section: 'Leases', message: 'takes 3 sentences from [2]' }],
    });
    const leases = documentSentences(parseDocument(out.content)).filter((s) => s.heading === 'Leases');
    expect(leases.filter((s) => citationNumbers(s.text).includes(2))).toHaveLength(2);
    expect(leases.length).toBeGreaterThanOrEqual(3);
    expect(out.revisions[0]).toMatch(/quoted \[2\] 3 times: kept 2/);
    expectQuotedFromSources(out.content, P);
  });

  it('keeps the existing citation numbers and gives a new source the next one', () => {
    const out = reviseDocument({ ...base, feedback: [{ kind: 'coverage', term: 'dead-letter', message: 'x' }] });
    expect(out.citations.map((c) => [c.n, c.passageId])).toEqual([
      [1, 'q.md:3'],
      [2, 'q.md:6'],
      [3, 'r.md:1'],
    ]);
    const added = documentSentences(parseDocument(out.content)).find((s) => contentStems(s.text).includes(stem('dead-letter')));
    expect(added?.text).toBe('After the last attempt a message moves to the dead-letter queue [3].');
  });
});
