/**
 * The editing agent's pure half: repeated sentences out, headings normalised, length enforced.
 * Every function takes a document model and returns a new one with a list of what it changed;
 * the References section is never cut and a citation kept in the text keeps its reference.
 */
import {
  type DocumentModel,
  cloneDocument,
  documentSentences,
  documentWords,
  mapSentences,
  parseDocument,
  renderDocument,
  renumberCitations,
} from './markdown.js';
import type { EditingResult } from './payloads.js';
import {
  LENGTH_TOLERANCE,
  STOPWORDS,
  capitalise,
  citationNumbers,
  contentStems,
  contextWord,
  countWords,
  isRecap,
  isRepeat,
  keyTerms,
  lengthBounds,
  stem,
  stripCitations,
} from './text.js';

/** A model and what was done to it. */
export interface Edit {
  model: DocumentModel;
  changes: string[];
}

function quote(sentence: string, max = 80): string {
  const s = stripCitations(sentence);
  return `"${s.length > max ? s.slice(0, max - 1) + '…' : s}"`;
}

function where(heading: string): string {
  return heading ? `'${heading}'` : 'the opening';
}

/** Drops every sentence that repeats (exactly or nearly) an earlier one; the first occurrence stays. */
export function removeRepeats(model: DocumentModel): Edit {
  const kept: string[] = [];
  const changes: string[] = [];
  // A sentence leaning on a removed one (same source, `...around such operations`) goes with it.
  let dropped: { n: number | undefined; section: number; paragraph: number } | undefined;
  const out = mapSentences(model, (s) => {
    const n = citationNumbers(s.text)[0];
    const lead = dropped;
    dropped = undefined;
    if (lead && lead.section === s.section && lead.paragraph === s.paragraph && lead.n === n && contextWord(s.text) !== null) {
      changes.push(`removed with it, as it leans on it: ${quote(s.text)}`);
      dropped = lead;
      return null;
    }
    // The conclusion's uncited sentences restate the body by design; only a repeated fact goes.
    if (isRecap(s)) return s.text;
    if (kept.some((k) => isRepeat(k, s.text))) {
      changes.push(`removed a repeated sentence in ${where(s.heading)}: ${quote(s.text)}`);
      dropped = { n, section: s.section, paragraph: s.paragraph };
      return null;
    }
    kept.push(s.text);
    return s.text;
  });
  if (changes.length === 0) return { model, changes };
  // A section that held nothing but repeats goes with them.
  out.sections = out.sections.filter((s, i) => {
    const emptied = s.paragraphs.length === 0 && (model.sections[i]?.paragraphs.length ?? 0) > 0;
    if (emptied) changes.push(`removed the section '${s.heading}', which only repeated earlier sentences`);
    return !emptied;
  });
  return { model: out, changes };
}

const TITLE_WORD = /^[A-Z][a-z]+(?:-[A-Za-z][a-z]*)*$/u;

/**
 * Heading text in sentence case without trailing punctuation: `Message Delivery Guarantees.` →
 * `Message delivery guarantees`. Only headings written in Title Case are lowered (so acronyms and a
 * proper noun in an otherwise sentence-case heading survive); the first letter is always upper case.
 */
export function headingCase(heading: string): string {
  let h = heading
    .replace(/\s+/gu, ' ')
    .trim()
    .replace(/[\s.:;,!?]+$/u, '');
  const words = h.split(' ');
  const rest = words.slice(1).filter((w) => /\p{L}/u.test(w) && !STOPWORDS.has(w.toLowerCase()));
  if (rest.length > 0 && rest.every((w) => TITLE_WORD.test(w))) {
    h = [words[0] ?? '', ...words.slice(1).map((w) => (TITLE_WORD.test(w) ? w.toLowerCase() : w))].join(' ');
  }
  return capitalise(h);
}

/**
 * One `#` title (the first heading, when it is level 1; no title is invented), every other heading `##`, each in sentence case without trailing punctuation, and the
 * reference list headed `References`.
 */
export function normaliseHeadings(model: DocumentModel): Edit {
  const out = cloneDocument(model);
  const changes: string[] = [];
  if (out.title !== null) {
    const title = headingCase(out.title);
    if (title !== out.title) changes.push(`retitled '${out.title}' as '${title}'`);
    out.title = title;
  }
  for (const s of out.sections) {
    const heading = headingCase(s.heading);
    if (s.level !== 2) changes.push(`made '${heading}' a '##' section (was level ${s.level})`);
    if (heading !== s.heading) changes.push(`renamed heading '${s.heading}' to '${heading}'`);
    s.level = 2;
    s.heading = heading;
  }
  if (out.referencesHeading !== null && out.referencesHeading !== 'References') {
    changes.push(`renamed heading '${out.referencesHeading}' to 'References'`);
    out.referencesHeading = 'References';
  }
  return { model: changes.length ? out : model, changes };
}

/** Options of {@link trimToLength}. */
export interface TrimOptions {
  /** Stems that must stay in at least one cited sentence (a topic's key terms). */
  protect?: ReadonlySet<string>;
  tolerance?: number;
}

/**
 * Cuts sentences until the prose is within `target × (1 + tolerance)` words, never below
 * `target × (1 − tolerance)`. It cuts from the longest section, last sentence first, never a
 * section's only sentence, never an uncited framing sentence while a cited one can go, and never
 * the only cited sentence that carries a protected stem.
 */
export function trimToLength(model: DocumentModel, target: number, options: TrimOptions = {}): Edit {
  const tolerance = options.tolerance ?? LENGTH_TOLERANCE;
  const { min: lower, max: upper } = lengthBounds(target, tolerance);
  const protect = options.protect ?? new Set<string>();
  let current = model;
  let words = documentWords(current);
  const changes: string[] = [];
  const before = words;
  while (words > upper) {
    const sentences = documentSentences(current);
    const sectionWords = new Map<number, number>();
    const sectionCount = new Map<number, number>();
    for (const s of sentences) {
      sectionWords.set(s.section, (sectionWords.get(s.section) ?? 0) + countWords(s.text));
      sectionCount.set(s.section, (sectionCount.get(s.section) ?? 0) + 1);
    }
    // How many cited sentences carry each protected stem.
    const carriers = new Map<string, number>();
    for (const s of sentences) {
      if (citationNumbers(s.text).length === 0) continue;
      for (const st of new Set(contentStems(stripCitations(s.text)))) if (protect.has(st)) carriers.set(st, (carriers.get(st) ?? 0) + 1);
    }
    const removable = sentences.filter((s) => {
      if ((sectionCount.get(s.section) ?? 0) < 2) return false;
      if (words - countWords(s.text) < lower) return false;
      if (citationNumbers(s.text).length === 0) return true;
      return ![...new Set(contentStems(stripCitations(s.text)))].some((st) => protect.has(st) && carriers.get(st) === 1);
    });
    removable.sort(
      (a, b) =>
        Number(citationNumbers(b.text).length > 0) - Number(citationNumbers(a.text).length > 0) ||
        (sectionWords.get(b.section) ?? 0) - (sectionWords.get(a.section) ?? 0) ||
        b.section - a.section ||
        b.paragraph - a.paragraph ||
        b.index - a.index,
    );
    const victim = removable[0];
    if (!victim) break;
    current = mapSentences(current, (s) =>
      s.section === victim.section && s.paragraph === victim.paragraph && s.index === victim.index ? null : s.text,
    );
    changes.push(`cut from ${where(victim.heading)} to meet the length: ${quote(victim.text)}`);
    words = documentWords(current);
  }
  if (changes.length) changes.push(`trimmed ${before} → ${words} words (target ${target} ± ${Math.round(tolerance * 100)}%)`);
  return { model: current, changes };
}

/** The stems of a topic's key terms, for {@link TrimOptions.protect}. */
export function keyStems(topic: string | undefined, requirements: readonly string[] = []): Set<string> {
  return new Set(topic === undefined ? [] : keyTerms(topic, requirements).map(stem));
}

/**
 * Edits a Markdown document: headings normalised, repeats removed, length enforced when `words`
 * is given, citations renumbered when removals left gaps. Content below the length target is left
 * as it is: the editor cuts, it does not invent.
 */
export function editDocument(
  content: string,
  options: { words?: number; topic?: string; requirements?: readonly string[] } = {},
): EditingResult {
  let model = parseDocument(content);
  const changes: string[] = [];
  const apply = (edit: Edit): void => {
    model = edit.model;
    changes.push(...edit.changes);
  };
  apply(normaliseHeadings(model));
  const headingChanges = changes.length;
  apply(removeRepeats(model));
  if (options.words !== undefined) {
    apply(trimToLength(model, options.words, { protect: keyStems(options.topic, options.requirements) }));
  }
  // Only removals can orphan a reference or leave a gap; numbering the author chose stays otherwise.
  const renumbered = changes.length > headingChanges ? renumberCitations(model) : model;
  if (renumbered !== model) {
    changes.push('renumbered the citations and reference list after removals');
    model = renumbered;
  }
  const out = renderDocument(model);
  return { content: changes.length ? out : content, changes, words: documentWords(model) };
}
