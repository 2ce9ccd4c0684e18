/**
 * The writing agent's pure half. No model, no randomness: an outline from the topic and its
 * requirements, each section filled with the source sentences that match it best (quoted as they
 * stand, each with a numbered citation), a reference list, and revisions that act on each
 * criticised point and leave the rest of the draft alone.
 */
import { headingCase } from './edits.js';
import { type DocumentModel, type Reference, attachCitation, citationsOf, paragraphSentences, renderDocument } from './markdown.js';
import { DEFAULT_WORDS, type Passage, type WritingResult, type WritingTask, isLeadPassage, passageContext } from './payloads.js';
import {
  SUPPORT_THRESHOLD,
  contentStems,
  countWords,
  isRepeat,
  MAX_QUOTES_PER_PASSAGE,
  joinList,
  leansOnContext,
  sectionAffinity,
  sectionStems,
  sentenceKey,
  stripCitations,
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

/** Re-exported: the rules live with the other text primitives so verification applies the same ones. */
export { leansOnContext, sectionStems };

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
    // What the sentence was written under counts: a sentence under "Times by tea type" is about times.
    const context = new Set(contentStems(passageContext(c.passage)));
    const primary = this.weight(c.stems, query.primary) + 0.5 * this.weight(context, query.primary);
    if (primary === 0) return 0;
    return primary + (query.secondary ? 0.2 * this.weight(c.stems, query.secondary) : 0);
  }

  /** The best candidate for `query` that repeats none of `taken` and passes `accept`. */
  pick(query: SentenceQuery, taken: readonly string[], accept: (c: Candidate) => boolean = () => true): Candidate | undefined {
    let best: Candidate | undefined;
    let bestScore = 0;
    for (const c of this.candidates) {
      const score = this.score(c, query);
      // A pair repeats what is taken when either of its sentences does.
      if (score <= bestScore || !accept(c) || taken.some((t) => c.parts.some((p) => isRepeat(t, p)))) continue;
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

/**
 * Up to `max` themes of a topic without requirements, best-ranked passage first: the titles of the
 * sources when the passages come from two or more (notes on tea in five files are about five
 * things), else the headings within the one source. A title that only repeats the topic is no theme.
 */
function passageThemes(passages: readonly Passage[], topic: ReadonlySet<string>, max: number): string[] {
  const collect = (pick: (p: Passage) => string | undefined): string[] => {
    const themes: string[] = [];
    const seen = new Set<string>();
    for (const p of passages) {
      const h = pick(p)?.trim();
      if (!h || seen.has(sentenceKey(h)) || !contentStems(h).some((st) => !topic.has(st))) continue;
      seen.add(sentenceKey(h));
      themes.push(h);
      if (themes.length >= max) break;
    }
    return themes;
  };
  const titles = collect((p) => p.title);
  return titles.length >= 2 ? titles : collect((p) => (isLeadPassage(p) ? undefined : p.heading));
}

/** How many themes a document of `words` words has room for: about 50 words of body each, 2..5. */
function themeCount(words: number): number {
  return Math.max(2, Math.min(5, Math.floor((words * 0.65) / 50)));
}

/**
 * Plans a document: an introduction on the topic, one section per requirement (or, without
 * requirements, per leading theme of the passages: their sources' titles), and a conclusion. The word
 * target is split 20% / 65% across the body / 15%.
 */
export function buildOutline(topic: string, requirements: readonly string[], passages: readonly Passage[], words: number): Outline {
  const topicStems = stems(topic);
  const allStems = stems([topic, ...requirements].join(' '));
  let themes = requirements.map((r) => r.trim()).filter((r) => contentStems(r).length > 0);
  if (themes.length === 0) themes = passageThemes(passages, topicStems, themeCount(words));
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

/** The first clause of a sentence (before `;`, `:`, or a subordinate `, which` / `, while` / `, because`...) when that is 5+ words, else the sentence; citations and end punctuation dropped. */
export function mainClause(sentence: string): string {
  const s = stripCitations(sentence)
    .trim()
    .replace(/[.!?]+["')\]”’]?$/u, '');
  const cut = /\s*[;:]\s|,\s+(?:which|while|whereas|because|so|but|although|since|unless)\b|\s+because\b/u.exec(s);
  return cut && countWords(s.slice(0, cut.index)) >= 5 ? s.slice(0, cut.index) : s;
}

/** Lower-cases the first letter of `text` when its first word is met in lower case in `lower` (so `Water` → `water`, but `Japanese` stays). */
export function softenFirst(text: string, lower: ReadonlySet<string>): string {
  const first = /^[\p{L}][\p{L}'-]*/u.exec(text)?.[0];
  return first !== undefined && first !== first.toLowerCase() && lower.has(first.toLowerCase())
    ? text.charAt(0).toLowerCase() + text.slice(1)
    : text;
}

/**
 * The conclusion's line for one body section: the main clause of its most central sentence (the
 * one sharing most words with the section's heading and its other sentences), introduced by the
 * heading: `On water temperature, water that is too hot scalds delicate leaves and draws out bitter
 * tannins.` Nothing the body did not say, uncited; undefined when no sentence of the section stands
 * on its own in 5..25 words. `lower`: the words the material uses in lower case.
 */
export function summarySentence(
  heading: string,
  picks: readonly Candidate[],
  topic: ReadonlySet<string>,
  lower: ReadonlySet<string>,
): string | undefined {
  const h = sectionStems(heading, topic);
  const parts = picks.flatMap((c) => c.parts).filter((p) => !leansOnContext(p));
  const scored = parts.map((part, i) => {
    const mine = new Set(contentStems(part));
    const others = new Set(parts.filter((_, j) => j !== i).flatMap((p) => contentStems(p)));
    let score = 0;
    for (const st of mine) score += (others.has(st) ? 1 : 0) + (h.has(st) ? 2 : 0);
    return { part, score, i };
  });
  scored.sort((a, b) => b.score - a.score || a.i - b.i);
  for (const { part } of scored) {
    const clause = mainClause(part);
    const words = countWords(clause);
    if (words < 5 || words > 25) continue;
    // A clause that names the section itself needs no frame: `Observability is the practice of...`.
    if (
      contentStems(clause)
        .slice(0, h.size)
        .every((st) => h.has(st))
    )
      return `${clause}.`;
    // A first word that may be a name (`Japanese green teas...`) cannot follow a comma: try the next sentence.
    const softened = softenFirst(clause, lower);
    if (softened === clause) continue;
    return `On ${lowerFirst(heading)}, ${softened}.`;
  }
  return undefined;
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

  // Where each candidate belongs: the body section it is most about, by the rule verification
  // checks placement with (`sectionAffinity`); the better query score, then the earlier section, breaks ties.
  const body = outline.sections.filter((s) => s.role === 'body');
  const home = new Map<Candidate, OutlineSection>();
  for (const c of material.candidates) {
    let best: OutlineSection | undefined;
    let bestAffinity = 0;
    let bestScore = 0;
    for (const section of body) {
      const affinity = sectionAffinity(c.text, passageContext(c.passage), section.query.primary);
      const score = material.score(c, section.query);
      if (affinity > bestAffinity || (affinity === bestAffinity && affinity > 0 && score > bestScore)) {
        best = section;
        bestAffinity = affinity;
        bestScore = score;
      }
    }
    if (best) home.set(c, best);
  }

  // A section reads in its sources' own order: source by source (best-ranked first), line by line.
  const sourceRank = new Map<string, number>();
  for (const [i, p] of task.passages.entries()) if (!sourceRank.has(p.source)) sourceRank.set(p.source, i);
  const reading = (a: Candidate, b: Candidate): number =>
    (sourceRank.get(a.passage.source) ?? 0) - (sourceRank.get(b.passage.source) ?? 0) ||
    a.passage.line - b.passage.line ||
    a.order - b.order;

  // What the opening sentence lists: the requirements, or else the themes the body has sections for.
  const leading = sentenceKey(body[0]?.heading ?? '');
  const titleKey = (c: Candidate): string => sentenceKey(c.passage.title ?? '');
  const covers = (sections: readonly OutlineSection[]): string[] =>
    task.requirements.length ? [...task.requirements] : sections.map((s) => s.heading);

  // Choose the introduction's and the body's sentences (in outline order)...
  const chosen = outline.sections.map((section) => {
    const framing = section.role === 'introduction' ? openingSentence(task.topic, covers(body)) : undefined;
    let count = framing ? countWords(framing) : 0;
    const picks: Candidate[] = [];
    if (section.role !== 'conclusion') {
      // The introduction introduces: what no body section wants, and one line at most from the
      // opening of the first section's source (`All true tea comes from one plant...`).
      const belongs = (c: Candidate): boolean =>
        (section.role === 'introduction'
          ? !home.has(c) || (isLeadPassage(c.passage) && titleKey(c) === leading && !picks.some((p) => home.has(p)))
          : home.get(c) === section) && quotes(picks, c) + c.parts.length <= MAX_QUOTES_PER_PASSAGE;
      while (count < section.budget) {
        const c = material.pick(section.query, taken, belongs);
        if (!c) break;
        const w = countWords(c.text);
        if (count + w > section.budget * 1.25 && count >= section.budget * 0.6) break;
        picks.push(c);
        taken.push(...c.parts);
        count += w;
      }
    }
    picks.sort(reading);
    return { section, framing, picks };
  });

  // Short of the target (less what the conclusion will take): body sections take their next best sentences.
  const fill = (words - (outline.sections.at(-1)?.budget ?? 0)) * 0.95;
  let total = chosen.reduce((n, c) => n + (c.framing ? countWords(c.framing) : 0) + c.picks.reduce((m, p) => m + countWords(p.text), 0), 0);
  for (let open = true; open && total < fill; ) {
    open = false;
    for (const entry of chosen) {
      if (entry.section.role !== 'body' || total >= fill) continue;
      const c = material.pick(
        entry.section.query,
        taken,
        (x) => home.get(x) === entry.section && quotes(entry.picks, x) + x.parts.length <= MAX_QUOTES_PER_PASSAGE,
      );
      if (!c) continue;
      entry.picks.push(c);
      taken.push(...c.parts);
      total += countWords(c.text);
      open = true;
    }
  }
  for (const entry of chosen) entry.picks.sort(reading);

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
  const topic = stems(task.topic);
  const lower = new Set(task.passages.flatMap((p) => p.text.match(/\b\p{Ll}[\p{L}'-]*/gu) ?? []));
  for (const { section, framing, picks } of chosen) {
    if (section.role === 'conclusion') {
      const paras = [closingSentence(task.topic, task.requirements), ...summaries];
      model.sections.push({ heading: section.heading, level: 2, paragraphs: paragraphs(paras.map((text) => ({ text }))) });
      continue;
    }
    if (section.role === 'body' && picks.length === 0) continue;
    const sentences = picks.map((c) => ({ text: citeCandidate(c, cite(c.passage)), source: c.passage.source }));
    if (framing) {
      const written = chosen.filter((c) => c.section.role === 'body' && c.picks.length > 0).map((c) => c.section);
      sentences.unshift({ text: openingSentence(task.topic, covers(written)), source: picks[0]?.passage.source ?? '' });
    }
    model.sections.push({ heading: section.heading, level: 2, paragraphs: paragraphs(sentences) });
    if (section.role === 'body') {
      const summary = summarySentence(section.heading, picks, topic, lower);
      if (summary) summaries.push(summary);
    }
  }
  return { content: renderDocument(model), citations: citationsOf(model), revisions: [] };
}
