/**
 * The document model the writing, editing and verification agents share: a Markdown document
 * parsed into a title, sections of paragraphs and a numbered reference list, and rendered back.
 * Paragraphs nobody touches keep their exact text, so parse → render is stable.
 */
import type { Citation } from './payloads.js';
import { CITATION_MARKER, citationNumbers, countWords, splitSentences } from './text.js';

/** A `##` section (or any heading other than the title and References). */
export interface Section {
  heading: string;
  /** 1..6; the editor normalises every section to 2. */
  level: number;
  /** Paragraph texts as written (lines joined by `\n`). */
  paragraphs: string[];
}

/**
 * One entry of the reference list: `[n] Title, source.md, lines 3-5` (a reader can follow it), or
 * `[n] source:line-endLine` when the source has no title.
 */
export interface Reference {
  n: number;
  source: string;
  line: number;
  endLine: number;
  /** The source's title (its first heading), when known. */
  title?: string;
}

/** A parsed document. */
export interface DocumentModel {
  /** The text of the first heading when it is a level-1 heading, else null. */
  title: string | null;
  /** Paragraphs between the title and the first section. */
  lead: string[];
  sections: Section[];
  /** The References heading as written, or null when the document has none. */
  referencesHeading: string | null;
  references: Reference[];
  /** Lines under References that are not `[n] source:line-endLine`. */
  malformedReferences: string[];
}

const HEADING = /^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/u;
const FENCE = /^\s*(```|~~~)/u;
const REFERENCE_LINE = /^\s*(?:[-*]\s+)?\[(\d+)\]\s+(\S+?):(\d+)(?:-(\d+))?(?:\s.*)?$/u;
const TITLED_REFERENCE_LINE = /^\s*(?:[-*]\s+)?\[(\d+)\]\s+(?:(.+?),\s+)?(\S+?),\s+lines?\s+(\d+)(?:[-–](\d+))?\.?\s*$/u;
const REFERENCES_HEADING = /^(references|sources|bibliography)[\s.:]*$/iu;

/** True for the heading of a reference list (`References`, `Sources`, `Bibliography`). */
export function isReferencesHeading(heading: string): boolean {
  return REFERENCES_HEADING.test(heading.trim());
}

/** Parses one reference line, or returns null. */
export function parseReferenceLine(line: string): Reference | null {
  const t = TITLED_REFERENCE_LINE.exec(line);
  if (t) {
    const first = Number(t[4]);
    const ref: Reference = { n: Number(t[1]), source: t[3] ?? '', line: first, endLine: t[5] === undefined ? first : Number(t[5]) };
    const title = t[2]?.trim().replace(/^[*_"“](.*)[*_"”]$/u, '$1');
    if (title) ref.title = title;
    return ref;
  }
  const m = REFERENCE_LINE.exec(line);
  if (!m) return null;
  const first = Number(m[3]);
  return { n: Number(m[1]), source: m[2] ?? '', line: first, endLine: m[4] === undefined ? first : Number(m[4]) };
}

/** `[n] Title, source.md, lines 3-5` when the title is known, else `[n] source:line-endLine`. */
export function formatReference(ref: Reference): string {
  if (ref.title) {
    const lines = ref.line === ref.endLine ? `line ${ref.line}` : `lines ${ref.line}-${ref.endLine}`;
    return `[${ref.n}] ${ref.title.replace(/\s+/gu, ' ')}, ${ref.source}, ${lines}`;
  }
  return `[${ref.n}] ${ref.source}:${ref.line}-${ref.endLine}`;
}

/** Parses Markdown into the document model. Never throws: whatever is not understood stays a paragraph. */
export function parseDocument(markdown: string): DocumentModel {
  const model: DocumentModel = { title: null, lead: [], sections: [], referencesHeading: null, references: [], malformedReferences: [] };
  let target: string[] = model.lead;
  let inReferences = false;
  let seenHeading = false;
  let block: string[] = [];
  let fenced = false;

  const flush = (): void => {
    if (block.length === 0) return;
    if (inReferences) {
      for (const line of block) {
        const ref = parseReferenceLine(line);
        if (ref) model.references.push(ref);
        else model.malformedReferences.push(line.trim());
      }
    } else {
      target.push(block.join('\n'));
    }
    block = [];
  };

  for (const raw of markdown.replace(/\r\n?/gu, '\n').split('\n')) {
    if (FENCE.test(raw)) fenced = !fenced;
    const heading = fenced || FENCE.test(raw) ? null : HEADING.exec(raw);
    if (heading) {
      flush();
      const level = (heading[1] ?? '#').length;
      const text = (heading[2] ?? '').trim();
      if (!seenHeading && level === 1) {
        model.title = text;
        target = model.lead;
        inReferences = false;
      } else if (isReferencesHeading(text) && model.referencesHeading === null) {
        model.referencesHeading = text;
        inReferences = true;
      } else {
        const section: Section = { heading: text, level, paragraphs: [] };
        model.sections.push(section);
        target = section.paragraphs;
        inReferences = false;
      }
      seenHeading = true;
      continue;
    }
    if (raw.trim() === '' && !fenced) flush();
    else block.push(inReferences ? raw : raw.replace(/\s+$/u, ''));
  }
  flush();
  return model;
}

/** Renders the model as Markdown: blocks separated by blank lines, References last, one trailing newline. */
export function renderDocument(model: DocumentModel): string {
  const parts: string[] = [];
  if (model.title !== null) parts.push(`# ${model.title}`);
  parts.push(...model.lead);
  for (const s of model.sections) parts.push(`${'#'.repeat(s.level)} ${s.heading}`, ...s.paragraphs);
  if (model.referencesHeading !== null || model.references.length > 0) {
    parts.push(`## ${model.referencesHeading ?? 'References'}`);
    parts.push(...[...model.references].sort((a, b) => a.n - b.n).map(formatReference), ...model.malformedReferences);
  }
  return parts.join('\n\n') + '\n';
}

/** A deep copy, so pure functions can return a changed model without touching their input. */
export function cloneDocument(model: DocumentModel): DocumentModel {
  return structuredClone(model);
}

/** True for a paragraph of running prose (not a list, table, quote, code block or HTML). */
export function isProse(paragraph: string): boolean {
  return !/^\s*([-*+]\s|\d+[.)]\s|\||>|<|```|~~~)/u.test(paragraph);
}

/** The sentences of a prose paragraph; none for other blocks. */
export function paragraphSentences(paragraph: string): string[] {
  return isProse(paragraph) ? splitSentences(paragraph) : [];
}

/** Where a sentence sits: `section` is -1 for the lead. */
export interface SentenceRef {
  section: number;
  paragraph: number;
  index: number;
  text: string;
  /** The heading of its section, or the title (or `''`) for the lead. */
  heading: string;
}

/** Every sentence of the body (lead and sections), in document order. */
export function documentSentences(model: DocumentModel): SentenceRef[] {
  const out: SentenceRef[] = [];
  const visit = (paragraphs: string[], section: number, heading: string): void => {
    for (const [paragraph, p] of paragraphs.entries()) {
      for (const [index, text] of paragraphSentences(p).entries()) out.push({ section, paragraph, index, text, heading });
    }
  };
  visit(model.lead, -1, model.title ?? '');
  for (const [i, s] of model.sections.entries()) visit(s.paragraphs, i, s.heading);
  return out;
}

/** Words of prose in the body: headings, citation markers, code blocks and References excluded. */
export function documentWords(model: DocumentModel): number {
  let n = 0;
  for (const p of [...model.lead, ...model.sections.flatMap((s) => s.paragraphs)]) {
    if (!/^\s*(```|~~~)/u.test(p)) n += countWords(p);
  }
  return n;
}

/**
 * Rewrites the body sentence by sentence: `fn` returns the new sentence, or null to drop it.
 * Paragraphs whose sentences all come back unchanged keep their exact text; emptied paragraphs go.
 */
export function mapSentences(model: DocumentModel, fn: (ref: SentenceRef) => string | null): DocumentModel {
  const out = cloneDocument(model);
  const rewrite = (paragraphs: string[], section: number, heading: string): string[] =>
    paragraphs.flatMap((p, paragraph) => {
      const sentences = paragraphSentences(p);
      if (sentences.length === 0) return [p];
      let changed = false;
      const kept: string[] = [];
      sentences.forEach((text, index) => {
        const next = fn({ section, paragraph, index, text, heading });
        if (next !== text) changed = true;
        if (next !== null && next.trim() !== '') kept.push(next);
      });
      if (!changed) return [p];
      return kept.length > 0 ? [kept.join(' ')] : [];
    });
  out.lead = rewrite(out.lead, -1, out.title ?? '');
  for (const [i, s] of out.sections.entries()) s.paragraphs = rewrite(s.paragraphs, i, s.heading);
  return out;
}

/** The citation numbers used in the body, in order of first appearance. */
export function citedNumbers(model: DocumentModel): number[] {
  const order: number[] = [];
  for (const s of documentSentences(model)) for (const n of citationNumbers(s.text)) if (!order.includes(n)) order.push(n);
  return order;
}

/** Rewrites the citation markers of a text through `map` (numbers not in the map stay). */
export function remapCitations(text: string, map: ReadonlyMap<number, number>): string {
  return text.replace(CITATION_MARKER, (marker, list: string) => {
    const lead = marker.startsWith(' ') ? ' ' : '';
    const nums = list.split(',').map((x) => {
      const n = Number(x.trim());
      return map.get(n) ?? n;
    });
    return `${lead}[${[...new Set(nums)].join(', ')}]`;
  });
}

/**
 * Numbers citations 1..k in order of first appearance and keeps exactly the references that are
 * cited. Returns the model unchanged (same object) when it already is numbered that way.
 */
export function renumberCitations(model: DocumentModel): DocumentModel {
  const order = citedNumbers(model);
  const map = new Map(order.map((n, i) => [n, i + 1]));
  const identity = order.every((n, i) => n === i + 1);
  const refNumbers = model.references.map((r) => r.n).sort((a, b) => a - b);
  const refsExact = refNumbers.length === new Set(refNumbers).size && refNumbers.every((n) => map.has(n));
  if (identity && refsExact) return model;
  const out = identity ? cloneDocument(model) : mapSentences(model, (s) => remapCitations(s.text, map));
  const seen = new Set<number>();
  out.references = model.references
    .filter((r) => map.has(r.n) && !seen.has(r.n) && seen.add(r.n))
    .map((r) => ({ ...r, n: map.get(r.n) ?? r.n }))
    .sort((a, b) => a.n - b.n);
  return out;
}

/** The reference list as `Citation`s (passage id `source:line`). */
export function citationsOf(model: DocumentModel): Citation[] {
  return [...model.references]
    .sort((a, b) => a.n - b.n)
    .map((r) => ({ n: r.n, passageId: `${r.source}:${r.line}`, source: r.source, line: r.line, endLine: r.endLine }));
}

/** Appends a citation marker before the sentence's closing punctuation: `Text [3].` */
export function attachCitation(sentence: string, n: number): string {
  const m = /^(.*?)([.!?]["')\]”’]?)$/su.exec(sentence.trim());
  if (!m) return `${sentence.trim()} [${n}]`;
  return `${m[1]} [${n}]${m[2]}`;
}
