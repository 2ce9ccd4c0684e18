import { describe, expect, it } from 'vitest';
import {
  attachCitation,
  citationsOf,
  citedNumbers,
  documentSentences,
  documentWords,
  mapSentences,
  parseDocument,
  parseReferenceLine,
  renderDocument,
  renumberCitations,
} from '../../src/agents/markdown.js';

const DOC = `# Delivery

## Leases

A lease hides a message while a consumer works [2]. The message comes back when the lease runs out [1].

- a list item stays as it is

## Retries

Retries use exponential backoff [2].

\`\`\`
## not a heading inside code
\`\`\`

## References

[1] delivery.md:16-20

[2] delivery.md:24-26
`;

describe('the document model', () => {
  it('parses title, sections, paragraphs and references', () => {
    const doc = parseDocument(DOC);
    expect(doc.title).toBe('Delivery');
    expect(doc.sections.map((s) => s.heading)).toEqual(['Leases', 'Retries']);
    expect(doc.sections[1]?.paragraphs).toHaveLength(2);
    expect(doc.references).toEqual([
      { n: 1, source: 'delivery.md', line: 16, endLine: 20 },
      { n: 2, source: 'delivery.md', line: 24, endLine: 26 },
    ]);
    expect(doc.malformedReferences).toEqual([]);
  });

  it('renders what it parsed unchanged', () => {
    expect(renderDocument(parseDocument(DOC))).toBe(DOC);
  });

  it('reads reference lines in their accepted forms', () => {
    expect(parseReferenceLine('[3] notes/a.md:12-18')).toEqual({ n: 3, source: 'notes/a.md', line: 12, endLine: 18 });
    expect(parseReferenceLine('- [4] a.md:7')).toEqual({ n: 4, source: 'a.md', line: 7, endLine: 7 });
    expect(parseReferenceLine('[5] a.md:1-2 (Leases)')).toEqual({ n: 5, source: 'a.md', line: 1, endLine: 2 });
    expect(parseReferenceLine('see a.md')).toBeNull();
    expect(parseDocument('# T\n\n## Sources\n\n[1] a.md:1-2\nnonsense\n').malformedReferences).toEqual(['nonsense']);
  });

  it('lists sentences and counts prose words only', () => {
    const doc = parseDocument(DOC);
    expect(documentSentences(doc).map((s) => s.text)).toEqual([
      'A lease hides a message while a consumer works [2].',
      'The message comes back when the lease runs out [1].',
      'Retries use exponential backoff [2].',
    ]);
    // 9 + 10 + 6 (list item) + 4 + the code block's words are excluded
    expect(documentWords(doc)).toBe(9 + 10 + 6 + 4);
  });

  it('rewrites sentences, dropping emptied paragraphs and keeping untouched ones verbatim', () => {
    const doc = parseDocument('# T\n\n## A\n\nOne two three.\nFour five six.\n\nSeven eight.\n');
    const out = mapSentences(doc, (s) => (s.text.startsWith('Seven') ? null : s.text));
    expect(out.sections[0]?.paragraphs).toEqual(['One two three.\nFour five six.']);
    expect(doc.sections[0]?.paragraphs).toHaveLength(2);
  });

  it('numbers citations by first appearance and drops uncited references', () => {
    const doc = renumberCitations(parseDocument(DOC));
    expect(citedNumbers(doc)).toEqual([1, 2]);
    expect(documentSentences(doc)[0]?.text).toBe('A lease hides a message while a consumer works [1].');
    expect(doc.references.map((r) => [r.n, r.line])).toEqual([
      [1, 24],
      [2, 16],
    ]);
    const orphan = parseDocument('# T\n\n## A\n\nText [1].\n\n## References\n\n[1] a.md:1-1\n\n[2] b.md:1-1\n');
    expect(renumberCitations(orphan).references.map((r) => r.source)).toEqual(['a.md']);
    const fine = parseDocument('# T\n\n## A\n\nText [1].\n\n## References\n\n[1] a.md:1-1\n');
    expect(renumberCitations(fine)).toBe(fine);
  });

  it('attaches a citation before the closing punctuation', () => {
    expect(attachCitation('Leases expire.', 3)).toBe('Leases expire [3].');
    expect(attachCitation('Do leases expire?"', 1)).toBe('Do leases expire [1]?"');
    expect(attachCitation('No punctuation', 2)).toBe('No punctuation [2]');
  });

  it('describes references as citations with passage ids', () => {
    expect(citationsOf(parseDocument(DOC))[0]).toEqual({ n: 1, passageId: 'delivery.md:16', source: 'delivery.md', line: 16, endLine: 20 });
  });
});
