import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { editDocument, headingCase, normaliseHeadings, removeRepeats, trimToLength } from '../../src/agents/edits.js';
import { documentSentences, documentWords, parseDocument, renderDocument } from '../../src/agents/markdown.js';
import { citationNumbers, isRepeat, sentenceKey, stem, stripCitations } from '../../src/agents/text.js';

describe('headings', () => {
  it('puts Title Case headings in sentence case and drops trailing punctuation', () => {
    expect(headingCase('Message Delivery Guarantees.')).toBe('Message delivery guarantees');
    expect(headingCase('Shared State and Multi-Agent Systems:')).toBe('Shared state and multi-agent systems');
    expect(headingCase('  workflow   recovery ')).toBe('Workflow recovery');
    expect(headingCase('Using NATS for delivery')).toBe('Using NATS for delivery');
    expect(headingCase('Why retries?')).toBe('Why retries');
  });

  it('keeps one # title, makes every other heading ## and names the reference list References', () => {
    const doc = parseDocument(
      '# Queues.\n\n## Leases And Locks\n\ntext.\n\n### Detail\n\nmore.\n\n# Second Title\n\nx.\n\n## sources\n\n[1] a.md:1-2\n',
    );
    const { model, changes } = normaliseHeadings(doc);
    expect(renderDocument(model)).toBe(
      '# Queues\n\n## Leases and locks\n\ntext.\n\n## Detail\n\nmore.\n\n## Second title\n\nx.\n\n## References\n\n[1] a.md:1-2\n',
    );
    expect(changes).toEqual([
      "retitled 'Queues.' as 'Queues'",
      "renamed heading 'Leases And Locks' to 'Leases and locks'",
      "made 'Detail' a '##' section (was level 3)",
      "made 'Second title' a '##' section (was level 1)",
      "renamed heading 'Second Title' to 'Second title'",
      "renamed heading 'sources' to 'References'",
    ]);
  });

  it('invents no title when the document has none', () => {
    const { model, changes } = normaliseHeadings(parseDocument('## Intro\n\nText.\n'));
    expect(model.title).toBeNull();
    expect(changes).toEqual([]);
  });
});

describe('repeats', () => {
  it('removes later exact and near repeats, keeping the first', () => {
    const doc = parseDocument(
      '# T\n\n## A\n\nLeases hide messages from consumers [1]. Retries back off exponentially [2].\n\n## B\n\nThe leases hide the messages from consumers [1]. Dead letters keep failures [2].\n',
    );
    const { model, changes } = removeRepeats(doc);
    expect(documentSentences(model).map((s) => s.text)).toEqual([
      'Leases hide messages from consumers [1].',
      'Retries back off exponentially [2].',
      'Dead letters keep failures [2].',
    ]);
    expect(changes).toEqual([`removed a repeated sentence in 'B': "The leases hide the messages from consumers."`]);
  });

  it('removes a section that only repeated earlier sentences', () => {
    const { model, changes } = removeRepeats(
      parseDocument('# T\n\n## A\n\nLeases hide messages [1].\n\n## B\n\nLeases hide messages [1].\n'),
    );
    expect(model.sections.map((s) => s.heading)).toEqual(['A']);
    expect(changes[1]).toBe("removed the section 'B', which only repeated earlier sentences");
  });
});

const LONG = `# Queues

## Introduction

This document covers queues. Queues decouple producers from consumers in time [1].

## Leases

A lease hides a delivered message until the consumer acknowledges it [2]. An expired lease makes the queue deliver the message again [2]. Every redelivery increments the attempt counter of the message [3].

## Retries

Retries are spaced with exponential backoff and random jitter [4]. After the last attempt a message moves to the dead-letter queue [4].

## References

[1] a.md:1-2

[2] a.md:4-6

[3] a.md:8-8

[4] b.md:1-3
`;

describe('length', () => {
  it('trims the longest section first, last sentence first, to within the tolerance', () => {
    const before = documentWords(parseDocument(LONG));
    expect(before).toBe(61);
    const { model, changes } = trimToLength(parseDocument(LONG), 45);
    const after = documentWords(model);
    expect(after).toBe(42);
    expect(after).toBeLessThanOrEqual(Math.floor(45 * 1.15));
    expect(after).toBeGreaterThanOrEqual(Math.ceil(45 * 0.85));
    expect(changes).toEqual([
      `cut from 'Leases' to meet the length: "Every redelivery increments the attempt counter of the message."`,
      `cut from 'Leases' to meet the length: "An expired lease makes the queue deliver the message again."`,
      'trimmed 61 → 42 words (target 45 ± 15%)',
    ]);
    expect(model.references).toHaveLength(4);
  });

  it('never cuts the only cited sentence that carries a protected term, nor a section to nothing', () => {
    const { model } = trimToLength(parseDocument(LONG), 20, { protect: new Set([stem('redelivery')]) });
    const texts = documentSentences(model).map((s) => s.text);
    expect(texts.some((t) => t.includes('Every redelivery'))).toBe(true);
    expect(documentWords(model)).toBeLessThan(61);
    for (const s of parseDocument(LONG).sections)
      expect(model.sections.find((m) => m.heading === s.heading)?.paragraphs.length).toBeGreaterThan(0);
  });

  it('leaves a short document alone: the editor cuts, it does not invent', () => {
    const out = editDocument(LONG, { words: 400 });
    expect(out.content).toBe(LONG);
    expect(out.changes).toEqual([]);
    expect(out.words).toBe(61);
  });
});

describe('editDocument', () => {
  it('normalises, dedupes, trims and renumbers, reporting every change', () => {
    const messy = LONG.replace('## Retries', '## Retries And Backoff.').replace(
      'acknowledges it [2].',
      'acknowledges it [2]. Queues decouple producers from consumers in time [1].',
    );
    const out = editDocument(messy, { words: 45 });
    expect(out.changes[0]).toBe("renamed heading 'Retries And Backoff.' to 'Retries and backoff'");
    expect(out.changes[1]).toMatch(/^removed a repeated sentence in 'Leases'/);
    expect(out.changes).toContain('renumbered the citations and reference list after removals');
    expect(out.words).toBeLessThanOrEqual(51);
    const doc = parseDocument(out.content);
    expect(doc.references.map((r) => r.n)).toEqual(doc.references.map((_, i) => i + 1));
  });

  it('returns the input byte for byte when nothing needs doing', () => {
    expect(editDocument(LONG)).toEqual({ content: LONG, changes: [], words: 61 });
  });
});

// ---------------------------------------------------------------- properties

const POOL = [
  'Leases hide a delivered message from other consumers.',
  'The leases hide delivered messages from the other consumers.',
  'Retries are spaced with exponential backoff.',
  'A dead-letter queue keeps every failed message.',
  'Priorities order the delivery of urgent work first.',
  'Shared state carries a version that grows with each change.',
  'A conflict error reports the expected and actual versions.',
  'Traces link the messages of one workflow together.',
];
const HEADINGS = ['Leases', 'Retries And Backoff.', 'shared state', 'Observability:', 'Introduction'];

const documents = fc
  .record({
    sections: fc.array(
      fc.record({
        heading: fc.constantFrom(...HEADINGS),
        level: fc.integer({ min: 1, max: 3 }),
        sentences: fc.array(fc.record({ text: fc.constantFrom(...POOL), cite: fc.integer({ min: 0, max: 5 }) }), {
          minLength: 1,
          maxLength: 5,
        }),
      }),
      { minLength: 1, maxLength: 5 },
    ),
    refs: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { maxLength: 5 }),
    words: fc.option(fc.integer({ min: 50, max: 120 }), { nil: undefined }),
  })
  .map(({ sections, refs, words }) => {
    const body = sections
      .map(
        (s) =>
          `${'#'.repeat(s.level + 1)} ${s.heading}\n\n${s.sentences.map((x) => (x.cite ? x.text.replace(/\.$/, ` [${x.cite}].`) : x.text)).join(' ')}`,
      )
      .join('\n\n');
    const references = [...refs]
      .sort((a, b) => a - b)
      .map((n) => `[${n}] notes/n${n}.md:${n}-${n + 2}`)
      .join('\n\n');
    return { content: `# Title\n\n${body}\n\n## References\n\n${references}\n`, words };
  });

function repeats(content: string): number {
  const sentences = documentSentences(parseDocument(content)).map((s) => s.text);
  let n = 0;
  sentences.forEach((s, i) => {
    if (sentences.slice(0, i).some((t) => isRepeat(t, s))) n++;
  });
  return n;
}

/** For each kept sentence, the sources its citations point to (`source:line`, unresolved ones as `?n`). */
function citedSources(content: string): Map<string, string[]> {
  const doc = parseDocument(content);
  const out = new Map<string, string[]>();
  for (const s of documentSentences(doc)) {
    const key = sentenceKey(s.text);
    if (out.has(key)) continue;
    out.set(
      key,
      citationNumbers(s.text).map((n) => {
        const r = doc.references.find((x) => x.n === n);
        return r ? `${r.source}:${r.line}` : '?';
      }),
    );
  }
  return out;
}

describe('editing invariants', () => {
  it('never increases the number of repeated sentences (and leaves none)', () => {
    fc.assert(
      fc.property(documents, ({ content, words }) => {
        const out = editDocument(content, words === undefined ? {} : { words });
        expect(repeats(out.content)).toBeLessThanOrEqual(repeats(content));
        expect(repeats(out.content)).toBe(0);
      }),
    );
  });

  it('keeps every citation of a kept sentence pointing at the same source', () => {
    fc.assert(
      fc.property(documents, ({ content, words }) => {
        const before = citedSources(content);
        const after = citedSources(editDocument(content, words === undefined ? {} : { words }).content);
        for (const [sentence, sources] of after) {
          // A resolved citation stays resolved to the same source; an unresolved one stays unresolved.
          expect(sources).toEqual(before.get(sentence));
        }
      }),
    );
  });

  it('never lengthens, never cuts below the tolerance, and is idempotent', () => {
    fc.assert(
      fc.property(documents, ({ content, words }) => {
        const once = editDocument(content, words === undefined ? {} : { words });
        const inputWords = documentWords(parseDocument(content));
        expect(once.words).toBeLessThanOrEqual(inputWords);
        if (once.changes.some((c) => c.startsWith('cut from'))) expect(once.words).toBeGreaterThanOrEqual(Math.ceil((words ?? 0) * 0.85));
        const twice = editDocument(once.content, words === undefined ? {} : { words });
        expect(twice.changes).toEqual([]);
        expect(twice.content).toBe(once.content);
      }),
    );
  });

  it('keeps exactly one title and only ## sections', () => {
    fc.assert(
      fc.property(documents, ({ content }) => {
        const out = editDocument(content).content;
        expect(out.match(/^# /gm)).toHaveLength(1);
        expect(out.match(/^#{3,} /gm)).toBeNull();
        for (const h of out.match(/^## .*$/gm) ?? []) expect(h).not.toMatch(/[.:;,!?]$/);
        expect(stripCitations(out)).toContain('## References');
      }),
    );
  });
});
