/**
 * The writing agent's pure half. No model, no randomness: an outline from the topic and its
 * requirements, each section filled with the source sentences that match it best (quoted as they
 * stand, each with a numbered citation), a reference list, and revisions that act on each
 * criticised point and leave the rest of the draft alone.
 */
import { headingCase } from './edits.js';
import { type DocumentModel, type Reference, attachCitation, citationsOf, paragraphSentences, renderDocument } from './markdown.js';
import { DEFAULT_WORDS, type Passage, type WritingResult, type WritingTask } from './payloads.js';
import {
  SUPPORT_THRESHOLD,
  contentStems,
  countWords,
  isRepeat,
  MAX_QUOTES_PER_PASSAGE,
  joinList,
  leansOnContext,
  sentenceKey,
  support,
  unresolvedReference,
} from './text.js';

/** A source sentence the writer may quote. */
export interface Candidate {
  /** The sentence, or a sentence and the one it leans on, joined. */
  text: string;
  /** The source sentences it is made of, in order (two when a sentence travels with its antecedent). */
  parts: string[];
  passage: Passage;
  /** Position in the material: passage rank, then sentence order. Breaks every tie. */
  order: number;
  stems: ReadonlySet<string>;
}

/** A query for sentences: `primary` stems must match; `secondary` ones only add weight. */
export interface SentenceQuery {
  primary: ReadonlySet<string>;
  secondary?: ReadonlySet<string>;
}

/** Paragraphs the writer builds hold at most this many sentences. */
export const MAX_SENTENCES_PER_PARAGRAPH = 4;

/** Re-exported: the rule lives with the other text primitives so verification applies the same one. */
export { leansOnContext };

/**
 * The quotable sentences of the passages: complete sentences of 6..50 words starting with a
 * capital or digit, first occurrence only, in passage order. A sentence that leans on the one
 * before it (`Most systems therefore choose...`, or `The high ratio...` before any ratio is named)
 * is only quotable together with that one.
 */
export function candidateSentences(passages: readonly Passage[]): Candidate[] {
  const out: Candidate[] = [];
  const keys = new Set<string>();
  const complete = (text: string): boolean => /[.!?]["')\]”’]?$/u.test(text) && /^["'(“‘]?[\p{Lu}\p{N}]/u.test(text);
  passages.forEach((passage, pi) => {
    const sentences = paragraphSentences(passage.text);
    // A definite phrase (`The queue...`) must be introduced by the passage's title or heading, or by
    // what travels with it: a sentence further up is not quoted with it, so would not be there.
    const framing = `${passage.title ?? ''}\n${passage.heading ?? ''}`;
    const leans = (text: string): boolean => leansOnContext(text) || unresolvedReference(text, framing) !== null;
    sentences.forEach((text, si) => {
      let parts = [text];
      if (leans(text)) {
        const before = sentences[si - 1];
        if (before === undefined || leans(before) || !complete(before)) return;
        if (unresolvedReference(text, `${framing}\n${before}`) !== null) return;
        parts = [before, text];
      }
      const joined = parts.join(' ');
      const words = countWords(joined);
      if (words < 6 || words > (parts.length > 1 ? 80 : 50)) return;
      if (!parts.every(complete)) return;
      const key = sentenceKey(joined);
      if (keys.has(key)) return;
      keys.add(key);
      out.push({ text: joined, parts, passage, order: pi * 1000 + si, stems: new Set(contentStems(joined)) });
    });
  });
  return out;
}

/** A candidate as it goes into a document: each of its sentences cited `[n]`. */
export function citeCandidate(c: Candidate, n: number): string {
  return c.parts.map((part) => attachCitation(part, n)).join(' ');
}

/** The reference for a passage: `[n] Title, file, lines`. */
export function referenceFor(p: Passage, n: number): Reference {
  return { n, source: p.source, line: p.line, endLine: p.endLine, ...(p.title ? { title: p.title } : {}) };
}

/** The passages as material to write from: candidate sentences with IDF weights. */
export class Material {
  readonly passages: readonly Passage[];
  readonly candidates: readonly Candidate[];
  readonly #idf = new Map<string, number>();
  readonly #n: number;

  constructor(passages: readonly Passage[]) {
    this.passages = passages;
    this.candidates = candidateSentences(passages);
    this.#n = this.candidates.length;
    const df = new Map<string, number>();
    for (const c of this.candidates) for (const s of c.stems) df.set(s, (df.get(s) ?? 0) + 1);
    for (const [s, d] of df) this.#idf.set(s, Math.log(1 + this.#n / d));
  }

  /** Σ idf of the query stems found in `stems` (rare shared words weigh most). */
  weight(stems: ReadonlySet<string>, query: ReadonlySet<string>): number {
    let w = 0;
    for (const s of query) if (stems.has(s)) w += this.#idf.get(s) ?? Math.log(1 + this.#n);
    return w;
  }

  /** How well a candidate answers a query; 0 when no primary stem matches. */
  score(c: Candidate, query: SentenceQuery): number {
    // The source's own heading counts: a sentence under "Times by tea type" is about times.
    const heading = new Set(contentStems(c.passage.heading ?? ''));
    const primary = this.weight(c.stems, query.primary) + 0.5 * this.weight(heading, query.primary);
    if (primary === 0) return 0;
    return primary + (query.secondary ? 0.2 * this.weight(c.stems, query.secondary) : 0);
  }

  /** The best candidate for `query` that repeats none of `taken` and passes `accept`. */
  pick(query: SentenceQuery, taken: readonly string[], accept: (c: Candidate) => boolean = () => true): Candidate | undefined {
    let best: Candidate | undefined;
    let bestScore = 0;
    for (const c of this.candidates) {
      const score = this.score(c, query);
      if (score <= bestScore || !accept(c) || taken.some((t) => isRepeat(t, c.text))) continue;
      best = c;
      bestScore = score;
    }
    return best;
  }

  /** The passage a reference points into (same source, range inside the passage's). */
  passageFor(ref: Reference): Passage | undefined {
    return this.passages.find((p) => p.source === ref.source && p.line <= ref.line && ref.endLine <= p.endLine);
  }

  /** The passage that best supports a sentence, if one supports it well enough. */
  supporting(sentence: string): Passage | undefined {
    let best: Passage | undefined;
    let bestSupport = SUPPORT_THRESHOLD - 1e-9;
    for (const p of this.passages) {
      const s = support(sentence, p.text);
      if (s > bestSupport) {
        best = p;
        bestSupport = s;
      }
    }
    return best;
  }
}

/** One planned section. */
export interface OutlineSection {
  heading: string;
  role: 'introduction' | 'body' | 'conclusion';
  query: SentenceQuery;
  /** Words of prose to aim for. */
  budget: number;
}

/** The plan of a document. */
export interface Outline {
  title: string;
  sections: OutlineSection[];
}

/** The distinct content stems of a text. */
export const stems = (text: string): Set<string> => new Set(contentStems(text));

function lowerFirst(text: string): string {
  const t = text.trim().replace(/[.!?]+$/u, '');
  return /^\p{Lu}\p{Ll}/u.test(t) ? t.charAt(0).toLowerCase() + t.slice(1) : t;
}

/** The stems that set a section's heading apart from the topic (all of them when it is nothing but topic words). */
export function sectionStems(heading: string, topic: ReadonlySet<string>): Set<string> {
  const all = stems(heading);
  const own = new Set([...all].filter((s) => !topic.has(s)));
  return own.size ? own : all;
}

/** Up to `max` distinct headings of the passages, best-ranked passage first: the themes of a topic without requirements. */
function passageThemes(passages: readonly Passage[], max: number): string[] {
  const themes: string[] = [];
  const seen = new Set<string>();
  for (const p of passages) {
    const h = p.heading?.trim();
    if (!h || contentStems(h).length === 0 || seen.has(sentenceKey(h))) continue;
    seen.add(sentenceKey(h));
    themes.push(h);
    if (themes.length >= max) break;
  }
  return themes;
}

/**
 * Plans a document: an introduction on the topic, one section per requirement (or, without
 * requirements, per leading theme of the passages: their headings), and a conclusion. The word
 * target is split 20% / 65% across the body / 15%.
 */
export function buildOutline(topic: string, requirements: readonly string[], passages: readonly Passage[], words: number): Outline {
  const topicStems = stems(topic);
  const allStems = stems([topic, ...requirements].join(' '));
  let themes = requirements.map((r) => r.trim()).filter((r) => contentStems(r).length > 0);
  if (themes.length === 0) themes = passageThemes(passages, 3);
  if (themes.length === 0) themes = ['Key points'];
  const body = Math.round((words * 0.65) / themes.length);
  return {
    title: headingCase(topic),
    sections: [
      {
        heading: 'Introduction',
        role: 'introduction',
        query: { primary: topicStems, secondary: allStems },
        budget: Math.round(words * 0.2),
      },
      ...themes.map((t): OutlineSection => {
        // What sets the section apart: a heading's topic words ("tea" in "Times by tea type") match everything.
        const primary = sectionStems(t, topicStems);
        return {
          heading: headingCase(t),
          role: 'body',
          query: { primary: primary.size ? primary : topicStems, secondary: topicStems },
          budget: body,
        };
      }),
      { heading: 'Conclusion', role: 'conclusion', query: { primary: allStems }, budget: Math.round(words * 0.15) },
    ],
  };
}

/** The uncited sentence that opens the introduction: what the document covers. */
export function openingSentence(topic: string, requirements: readonly string[]): string {
  const reqs = requirements.map(lowerFirst).filter(Boolean);
  return `This document covers ${lowerFirst(topic)}${reqs.length ? `: ${joinList(reqs)}` : ''}.`;
}

/** The uncited sentence that opens the conclusion. */
export function closingSentence(topic: string, requirements: readonly string[]): string {
  const reqs = requirements.map(lowerFirst).filter(Boolean);
  return reqs.length
    ? `Taken together, ${joinList(reqs)} are the parts of ${lowerFirst(topic)} covered here.`
    : `Taken together, these notes describe ${lowerFirst(topic)}.`;
}

/** Groups sentences into paragraphs: a new one when the source changes after two sentences, or after four. */
function paragraphs(sentences: readonly { text: string; source?: string }[]): string[] {
  const out: string[][] = [];
  let current: string[] = [];
  let source: string | undefined;
  for (const s of sentences) {
    if (
      current.length >= MAX_SENTENCES_PER_PARAGRAPH ||
      (current.length >= 2 && s.source !== undefined && source !== undefined && s.source !== source)
    ) {
      out.push(current);
      current = [];
    }
    current.push(s.text);
    if (s.source !== undefined) source = s.source;
  }
  if (current.length) out.push(current);
  return out.map((p) => p.join(' '));
}

/**
 * The conclusion's summary of one body section, from what that section drew on: the headings of
 * the source sections its sentences came from (`covered idempotency keys; naturally idempotent
 * operations`), else its most repeated phrases. Uncited, and nothing the body did not say.
 */
export function summarySentence(heading: string, picks: readonly Candidate[]): string | undefined {
  const key = sentenceKey(heading);
  const seen = new Set<string>();
  const items: string[] = [];
  for (const c of picks) {
    const h = c.passage.heading?.trim();
    if (!h || h === c.passage.title || sentenceKey(h) === key || seen.has(sentenceKey(h))) continue;
    seen.add(sentenceKey(h));
    items.push(lowerFirst(h));
    if (items.length >= 3) break;
  }
  if (items.length === 0) return undefined;
  return `The section on ${lowerFirst(heading)} covered ${items.join('; ')}.`;
}

/** How many sentences of `picks` come from the passage `c` comes from. */
function quotes(picks: readonly Candidate[], c: Candidate): number {
  return picks.filter((p) => p.passage.id === c.passage.id).reduce((n, p) => n + p.parts.length, 0);
}

/**
 * Writes a first draft. Each quotable sentence goes to the body section it is most about (the
 * introduction only takes what no body section wants); a section with nothing to say is left out;
 * the conclusion sums up what the body said, with no new facts.
 */
export function composeDocument(task: WritingTask): WritingResult {
  const words = task.words ?? DEFAULT_WORDS;
  const material = new Material(task.passages);
  const outline = buildOutline(task.topic, task.requirements, task.passages, words);
  const taken: string[] = [];
  const numbers = new Map<string, number>();
  const references: Reference[] = [];
  const cite = (p: Passage): number => {
    let n = numbers.get(p.id);
    if (n === undefined) {
      n = numbers.size + 1;
      numbers.set(p.id, n);
      references.push(referenceFor(p, n));
    }
    return n;
  };

  // Where each candidate belongs: the body section whose query it answers best (earlier wins ties).
  const body = outline.sections.filter((s) => s.role === 'body');
  const home = new Map<Candidate, OutlineSection>();
  for (const c of material.candidates) {
    let best: OutlineSection | undefined;
    let bestScore = 0;
    for (const section of body) {
      const score = material.score(c, section.query);
      if (score > bestScore) {
        best = section;
        bestScore = score;
      }
    }
    if (best) home.set(c, best);
  }

  // Choose the introduction's and the body's sentences (in outline order)...
  const chosen = outline.sections.map((section) => {
    const framing = section.role === 'introduction' ? openingSentence(task.topic, task.requirements) : undefined;
    let count = framing ? countWords(framing) : 0;
    const picks: Candidate[] = [];
    if (section.role !== 'conclusion') {
      const belongs = (c: Candidate): boolean =>
        (section.role === 'introduction' ? !home.has(c) : home.get(c) === section) &&
        quotes(picks, c) + c.parts.length <= MAX_QUOTES_PER_PASSAGE;
      while (count < section.budget) {
        const c = material.pick(section.query, taken, belongs);
        if (!c) break;
        const w = countWords(c.text);
        if (count + w > section.budget * 1.25 && count >= section.budget * 0.6) break;
        picks.push(c);
        taken.push(c.text);
        count += w;
      }
    }
    picks.sort((a, b) => a.order - b.order);
    return { section, framing, picks };
  });

  // Short of the target: body sections take their next best sentences wherever those were homed.
  let total = chosen.reduce((n, c) => n + (c.framing ? countWords(c.framing) : 0) + c.picks.reduce((m, p) => m + countWords(p.text), 0), 0);
  for (let open = true; open && total < words * 0.95; ) {
    open = false;
    for (const entry of chosen) {
      if (entry.section.role !== 'body' || total >= words * 0.95) continue;
      const c = material.pick(
        entry.section.query,
        taken,
        (x) => home.get(x) === entry.section && quotes(entry.picks, x) + x.parts.length <= MAX_QUOTES_PER_PASSAGE,
      );
      if (!c) continue;
      entry.picks.push(c);
      taken.push(c.text);
      total += countWords(c.text);
      open = true;
    }
  }
  for (const entry of chosen) entry.picks.sort((a, b) => a.order - b.order);

  // ...then number citations in reading order, leaving out body sections with nothing to say.
  const model: DocumentModel = {
    title: outline.title,
    lead: [],
    sections: [],
    referencesHeading: 'References',
    references,
    malformedReferences: [],
  };
  const summaries: string[] = [];
  for (const { section, framing, picks } of chosen) {
    if (section.role === 'conclusion') {
      const paras = [closingSentence(task.topic, task.requirements), ...summaries];
      model.sections.push({ heading: section.heading, level: 2, paragraphs: paragraphs(paras.map((text) => ({ text }))) });
      continue;
    }
    if (section.role === 'body' && picks.length === 0) continue;
    const sentences = picks.map((c) => ({ text: citeCandidate(c, cite(c.passage)), source: c.passage.source }));
    if (framing) sentences.unshift({ text: framing, source: picks[0]?.passage.source ?? '' });
    model.sections.push({ heading: section.heading, level: 2, paragraphs: paragraphs(sentences) });
    if (section.role === 'body') {
      const summary = summarySentence(section.heading, picks);
      if (summary) summaries.push(summary);
    }
  }
  return { content: renderDocument(model), citations: citationsOf(model), revisions: [] };
}
