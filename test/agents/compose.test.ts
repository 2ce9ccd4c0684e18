import { join } from 'node:path';
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
import { documentSentences, documentWords, paragraphSentences, parseDocument, renderDocument } from '../../src/agents/markdown.js';
import type { Passage, WritingTask } from '../../src/agents/payloads.js';
import { PassageIndex, loadSources, research } from '../../src/agents/passages.js';
import { citationNumbers, contentStems, stem, stripCitations } from '../../src/agents/text.js';
import { REQUIREMENTS, SAMPLES, TOPIC } from './helpers.js';
import { verifyDocument } from '../../src/agents/checks.js';

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

  it("takes its themes from the sources' titles when the passages come from several sources", () => {
    const outline = buildOutline(
      'Brewing tea',
      [],
      [
        { id: 's:7', source: 's.md', line: 7, endLine: 7, text: 'x', score: 3, title: 'Steeping time', heading: 'Times by tea type' },
        { id: 'w:3', source: 'w.md', line: 3, endLine: 3, text: 'y', score: 2, title: 'Water temperature', heading: 'Water temperature' },
        { id: 's:9', source: 's.md', line: 9, endLine: 9, text: 'z', score: 1, title: 'Steeping time', heading: 'Multiple infusions' },
        // A title that only repeats the topic is no theme.
        { id: 'b:1', source: 'b.md', line: 1, endLine: 1, text: 'v', score: 1, title: 'Brewing tea' },
      ],
      400,
    );
    expect(outline.sections.map((s) => s.heading)).toEqual(['Introduction', 'Steeping time', 'Water temperature', 'Conclusion']);
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
    // The rest sums up the body in the conclusion: at most one sentence per body section, nothing
    // cited, each the main point of a body sentence (introduced by its section's heading when it
    // does not name it itself).
    const body = documentSentences(doc).filter((s) => !['Introduction', 'Conclusion'].includes(s.heading));
    expect(uncited.length).toBeGreaterThan(2);
    expect(uncited.length - 2).toBeLessThanOrEqual(REQUIREMENTS.length);
    for (const s of uncited.slice(2)) {
      expect(s.heading).toBe('Conclusion');
      const point = s.text.replace(/^On [^,]+, /u, '').replace(/\.$/u, '');
      expect(body.some((b) => stripCitations(b.text).toLowerCase().includes(point.toLowerCase()))).toBe(true);
    }
    expect(documentWords(doc)).toBeGreaterThan(300);
    expect(documentWords(doc)).toBeLessThan(500);
  });

  it('puts each sentence under the section it is about, and sums up each section from what it said', async () => {
    const tea = join(SAMPLES, '..', 'tea');
    const teaPassages = research(PassageIndex.fromFiles(await loadSources(tea)), { topic: 'Brewing tea' });
    const content = composeDocument({ topic: 'Brewing tea', requirements: [], words: 400, passages: teaPassages }).content;
    const doc = parseDocument(content);
    const titles = new Map(teaPassages.map((p) => [p.source, p.title]));
    // Notes on tea in five files make sections named after the files' titles...
    const body = doc.sections.slice(1, -1);
    expect(body.length).toBeGreaterThanOrEqual(3);
    for (const section of body) {
      for (const s of documentSentences({ ...doc, sections: [section] })) {
        // ...and every sentence under one of them is quoted from that file, or names all it is about
        // itself (`...a high ratio of leaf to water` under 'Leaf to water ratio').
        const ref = doc.references.find((r) => r.n === citationNumbers(s.text)[0]);
        const own = new Set(contentStems(stripCitations(s.text)));
        const named = contentStems(section.heading).every((st) => own.has(st) || st === stem('tea'));
        expect(titles.get(ref?.source ?? '') === section.heading || named, `${s.text} under ${section.heading}`).toBe(true);
      }
    }
    const under = (needle: string) => doc.sections.find((x) => x.paragraphs.join(' ').includes(needle))?.heading;
    expect(under('steeps for')).toBe('Steeping time');
    // The conclusion restates, uncited, one point of each section it names.
    const conclusion = doc.sections.at(-1);
    expect(conclusion?.heading).toBe('Conclusion');
    expect(citationNumbers(conclusion?.paragraphs.join(' ') ?? '')).toEqual([]);
    expect(verifyDocument({ content, topic: 'Brewing tea', requirements: [], words: 400, passages: teaPassages }).problems).toEqual([]);
  });

  it('verification flags a sentence under the wrong heading (or a detail in the introduction), and a revision moves it', async () => {
    const tea = join(SAMPLES, '..', 'tea');
    const teaPassages = research(PassageIndex.fromFiles(await loadSources(tea)), { topic: 'Brewing tea' });
    const teaTask = { topic: 'Brewing tea', requirements: [] as string[], words: 400, passages: teaPassages };
    const doc = parseDocument(composeDocument(teaTask).content);
    const steeping = doc.sections.find((x) => x.heading === 'Steeping time');
    const water = doc.sections.find((x) => x.heading === 'Water temperature');
    const intro = doc.sections[0];
    const times = paragraphSentences(steeping?.paragraphs.join(' ') ?? '').filter((t) => / steeps for /u.test(t));
    expect(times.length).toBe(2);
    const [green, black] = times as [string, string];
    // Steeping times moved: one under 'Water temperature', one into the introduction.
    if (!steeping || !water || !intro) throw new Error('expected the tea sections');
    steeping.paragraphs = steeping.paragraphs.map((p) =>
      p.replace(` ${green}`, '').replace(green, '').replace(` ${black}`, '').replace(black, '').trim(),
    );
    steeping.paragraphs = steeping.paragraphs.filter((p) => p !== '');
    water.paragraphs.push(green);
    intro.paragraphs.push(black);
    const misplaced = renderDocument(doc);
    const verdict = verifyDocument({ ...teaTask, content: misplaced });
    const placement = verdict.problems.filter((p) => / belongs under /u.test(p.message));
    expect(placement.map((p) => [p.section, p.sentence])).toEqual([
      ['Introduction', black],
      ['Water temperature', green],
    ]);
    expect(placement[0]?.message).toMatch(/is about 'Steeping time', not 'Introduction': it belongs under 'Steeping time'$/u);
    // The writer acts on it: both go back under 'Steeping time', and nothing is flagged any more.
    const revised = reviseDocument({ ...teaTask, draft: misplaced, feedback: placement });
    expect(revised.revisions.filter((r) => r.startsWith('moved '))).toHaveLength(2);
    const after = parseDocument(revised.content);
    expect(after.sections.find((x) => x.heading === 'Steeping time')?.paragraphs.join(' ')).toContain(stripCitations(green).slice(0, 30));
    expect(verifyDocument({ ...teaTask, content: revised.content }).problems.filter((p) => / belongs under /u.test(p.message))).toEqual([]);
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
