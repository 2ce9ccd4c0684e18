/**
 * Text primitives shared by the reference agents: tokens, a light stemmer, stopwords, sentence
 * splitting, word counts and the key terms of a topic. Pure and deterministic, so the research,
 * writing, editing and verification agents all agree on what a "word" or a "term" is.
 */

/** How far a document may stray from its word target and still meet the length requirement (±15%). */
export const LENGTH_TOLERANCE = 0.15;

/**
 * The word counts that meet a target: `target × (1 ± tolerance)`, rounded inwards (with a hair of
 * slack so `400 × 1.15` is 460, not 459 by floating point).
 */
export function lengthBounds(target: number, tolerance = LENGTH_TOLERANCE): { min: number; max: number } {
  return { min: Math.ceil(target * (1 - tolerance) - 1e-9), max: Math.floor(target * (1 + tolerance) + 1e-9) };
}

/** Words too common to say anything about a topic. */
export const STOPWORDS: ReadonlySet<string> = new Set(
  (
    'a about above after again against all almost also although always am among an and another any anyone anything ' +
    'are around as at be because been before being below between both but by can cannot could did do does doing done ' +
    'down during each either else enough even ever every few first for from further get gets getting given gives go ' +
    'goes had has have having he her here hers herself him himself his how however i if in into is it its itself just ' +
    'least less let like made make makes many may me might more most much must my myself neither never no nor not now ' +
    'of off often on once one only onto or other others otherwise our ours ourselves out over own per perhaps rather ' +
    're same several shall she should since so some something still such than that the their theirs them themselves ' +
    'then there therefore these they this those though through thus to too toward towards two under until up upon us ' +
    'use used uses using usually very via was we well were what when whenever where whether which while who whom ' +
    'whose why will with within without would yet you your yours yourself'
  ).split(' '),
);

const TOKEN = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu;

/** Lower-cased word tokens; hyphenated words (`multi-agent`) stay whole, possessive `'s` is dropped. */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  for (const m of text.toLowerCase().matchAll(TOKEN)) {
    out.push(m[0].replace(/['’]s$/u, '').replace(/’/gu, "'"));
  }
  return out;
}

// One suffix at a time, longest first, repeated while at least three characters remain. Crude
// next to Porter, but it folds the variants that matter here onto one stem (deliver, delivery,
// delivered; coordinate, coordination; guarantee, guarantees; recover, recovery).
const SUFFIXES = [
  'abilities',
  'ibilities',
  'ability',
  'ibility',
  'ations',
  'ators',
  'ation',
  'ator',
  'ating',
  'ments',
  'ment',
  'ness',
  'ably',
  'ings',
  'able',
  'ible',
  'ates',
  'ated',
  'ing',
  'ies',
  'ied',
  'ers',
  'ate',
  'ed',
  'er',
  'es',
  'ly',
  'y',
  's',
  'e',
].sort((a, b) => b.length - a.length);

function stripOnce(w: string): string {
  for (const suffix of SUFFIXES) {
    if (!w.endsWith(suffix) || w.length - suffix.length < 3) continue;
    // Keep `class`, `process`, `status`-like endings intact for the plain `s` rules.
    if ((suffix === 's' || suffix === 'es') && /(ss|us|is)$/u.test(w)) continue;
    return w.slice(0, -suffix.length);
  }
  return w;
}

/** A light suffix-stripping stem: `stem('deliveries') === stem('delivered') === stem('deliver')`. */
export function stem(word: string): string {
  const w = word.toLowerCase();
  if (w.length <= 3 || /\d/u.test(w)) return w;
  if (w.includes('-')) return w.split('-').map(stem).join('-');
  // Fold the noun onto its adjective first: idempotency/idempotence → idempotent, consistency → consistent.
  let current = w.length > 6 ? w.replace(/en(?:cy|ce|cies|ces)$/u, 'ent') : w;
  for (let i = 0; i < 3; i++) {
    const next = stripOnce(current);
    if (next === current) break;
    current = next;
  }
  return current;
}

/** True when a token carries meaning: not a stopword, not a bare number, at least two characters. */
export function isContentWord(token: string): boolean {
  return token.length >= 2 && !STOPWORDS.has(token) && !/^\d+$/u.test(token);
}

/** The stems of the content words of `text`, in order, repeats kept. */
export function contentStems(text: string): string[] {
  return tokenize(text).filter(isContentWord).map(stem);
}

/**
 * The key terms of a topic and its requirements: their content words in order of first appearance,
 * one per stem, lower-cased. `keyTerms('Reliable coordination', ['workflow recovery'])` is
 * `['reliable', 'coordination', 'workflow', 'recovery']`.
 */
export function keyTerms(topic: string, requirements: readonly string[] = []): string[] {
  const seen = new Set<string>();
  const terms: string[] = [];
  for (const token of tokenize([topic, ...requirements].join(' \n '))) {
    if (!isContentWord(token)) continue;
    const s = stem(token);
    if (seen.has(s)) continue;
    seen.add(s);
    terms.push(token);
  }
  return terms;
}

/**
 * An uncited sentence of the conclusion: a restatement of the body, which may echo it (the
 * conclusion is checked for new claims instead); only a cited fact there can be a repeat.
 */
export function isRecap(s: { heading: string; text: string }): boolean {
  return sentenceKey(s.heading) === 'conclusion' && citationNumbers(s.text).length === 0;
}

/** Matches one citation marker such as `[3]` or `[2, 5]`. */
export const CITATION_MARKER = /\s?\[(\d+(?:\s*,\s*\d+)*)\]/gu;

/** The citation numbers of a sentence, in order, repeats removed. */
export function citationNumbers(text: string): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(CITATION_MARKER)) {
    for (const part of (m[1] ?? '').split(',')) {
      const n = Number(part.trim());
      if (!out.includes(n)) out.push(n);
    }
  }
  return out;
}

/** The sentence without its citation markers. */
export function stripCitations(text: string): string {
  return text
    .replace(CITATION_MARKER, '')
    .replace(/\s+([.!?,;:])/gu, '$1')
    .trim();
}

/** Words as a reader counts them: whitespace-separated runs holding a letter or digit, citation markers excluded. */
export function countWords(text: string): number {
  let n = 0;
  for (const part of stripCitations(text).split(/\s+/u)) if (/[\p{L}\p{N}]/u.test(part)) n++;
  return n;
}

const ABBREVIATIONS = /\b(e\.g|i\.e|etc|vs|cf|approx|Dr|Mr|Mrs|Ms|Fig|No)\./gu;
const PLACEHOLDER = '\u0000';

/**
 * Splits prose into sentences. A sentence ends at `.`, `!` or `?` (optionally followed by a
 * closing quote or bracket) before whitespace and an upper-case letter, digit, quote or bracket.
 * Common abbreviations (`e.g.`, `i.e.`, `etc.`) do not end a sentence.
 */
export function splitSentences(text: string): string[] {
  const flat = text.replace(/\s+/gu, ' ').trim();
  if (!flat) return [];
  const protectedText = flat.replace(ABBREVIATIONS, (m) => m.slice(0, -1) + PLACEHOLDER);
  return protectedText
    .split(/(?<=[.!?]["')\]”’]?)\s+(?=["'([“‘`]?[\p{Lu}\p{N}])/u)
    .map((s) => s.replaceAll(PLACEHOLDER, '.').trim())
    .filter((s) => s.length > 0);
}

/** A sentence reduced for comparison: citations, case, punctuation and spacing removed. */
export function sentenceKey(sentence: string): string {
  return tokenize(stripCitations(sentence)).join(' ');
}

/** Jaccard similarity of the content stems of two sentences, in [0, 1]. */
export function similarity(a: string, b: string): number {
  const sa = new Set(contentStems(stripCitations(a)));
  const sb = new Set(contentStems(stripCitations(b)));
  if (sa.size === 0 && sb.size === 0) return sentenceKey(a) === sentenceKey(b) ? 1 : 0;
  let common = 0;
  for (const s of sa) if (sb.has(s)) common++;
  return common / (sa.size + sb.size - common);
}

/** Sentences at least this similar are treated as repeats of each other. */
export const NEAR_DUPLICATE = 0.85;

/** True when two sentences say the same thing in (nearly) the same words. */
export function isRepeat(a: string, b: string): boolean {
  return sentenceKey(a) === sentenceKey(b) || similarity(a, b) >= NEAR_DUPLICATE;
}

/**
 * The share of the content stems of `sentence` (citations stripped) found in `source`, in [0, 1].
 * A sentence quoted from the source scores 1; 1 also when the sentence has no content words.
 */
export function support(sentence: string, source: string): number {
  const wanted = [...new Set(contentStems(stripCitations(sentence)))];
  if (wanted.length === 0) return 1;
  const have = new Set(contentStems(source));
  return wanted.filter((s) => have.has(s)).length / wanted.length;
}

/**
 * A section may quote at most this many sentences from one passage: more is copying a paragraph
 * rather than writing from several sources. Verification flags it; revisions respect it.
 */
export const MAX_QUOTES_PER_PASSAGE = 2;

/** Cited sentences must share at least this much of their content with the cited text. */
export const SUPPORT_THRESHOLD = 0.8;

/** `Message delivery guarantees` from `message delivery guarantees`: first letter upper-cased, the rest untouched. */
export function capitalise(text: string): string {
  const t = text.trim();
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** `a, b and c` (Oxford comma off, as in the sample notes). */
export function joinList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

// A sentence opening with one of these leans on the sentence before it in its source; quoted
// elsewhere it would point at nothing ("They exchange messages..."), so it is not quotable alone.
const ANAPHORA = new Set(
  (
    'this these those that they them it its their such both either neither otherwise instead then thus hence however ' +
    'likewise similarly conversely meanwhile here therefore consequently accordingly moreover furthermore additionally ' +
    'also besides nevertheless nonetheless so but and yet still finally second third lastly'
  ).split(' '),
);
// Connectives that point back from inside a sentence's opening: "Most systems therefore choose...".
const INNER_CONNECTIVE =
  /^(?:\S+\s+){0,7}?(therefore|thus|hence|consequently|accordingly|also|in turn|as a result|in addition|by contrast|in contrast)\b/iu;
// "...belong there as well." / "..., too.": the sentence adds to one before it.
const TRAILING_CONNECTIVE = /\b(as well|too)[.!?]?["')\]”’]?$/iu;
// "around such operations": `such` pointing back at something named before (not `such as`).
const SUCH = /\b(such)\s+(?!as\b)[\p{L}]/iu;
// "This document covers...": the writer's own framing names what it points at.
const SELF_REFERENCE = /^(this|the present|these) (document|article|report|section|notes?|guide)\b/iu;

/**
 * The word by which a sentence leans on the one before it (`This`, `They`, `However`, or a
 * connective early on: `Most systems therefore choose...`), or null when it stands on its own.
 */
export function contextWord(sentence: string): string | null {
  const plain = stripCitations(sentence).replace(/^["'(“‘]+/u, '');
  if (SELF_REFERENCE.test(plain)) return null;
  const first = /^([\p{L}]+)/u.exec(plain)?.[1]?.toLowerCase();
  if (first !== undefined && ANAPHORA.has(first)) return first;
  return (INNER_CONNECTIVE.exec(plain)?.[1] ?? TRAILING_CONNECTIVE.exec(plain)?.[1] ?? SUCH.exec(plain)?.[1])?.toLowerCase() ?? null;
}

/** True when a sentence cannot stand on its own (see `contextWord`). */
export function leansOnContext(sentence: string): boolean {
  return contextWord(sentence) !== null;
}

/**
 * Words a writer may use to frame a summary ("Taken together, ... covered here") that are not
 * claims about the subject; the new-claims check of a conclusion ignores them.
 */
export const FRAMING_WORDS: ReadonlySet<string> = new Set(
  'taken together document covers covered cover notes sources source stress stressed key points point summary short main part parts describe described came comes down section sections above'
    .split(' ')
    .map((w) => stem(w)),
);

/** Topic words that name a kind of text rather than a subject: the sources need not mention them. */
export const GENERIC_TOPIC_WORDS: ReadonlySet<string> = new Set(
  'overview introduction guide notes basics principles practice practices primer summary handbook tutorial essentials fundamentals'
    .split(' ')
    .map((w) => stem(w)),
);

// "The high ratio is...", "Those queues...": a definite article or demonstrative, then up to three
// words (up to two modifiers and a head noun) before a stopword, a number or punctuation.
const DEFINITE = /^(the|that|those)\s+((?:[\p{L}]+(?:-[\p{L}]+)*\s+){0,2}[\p{L}]+(?:-[\p{L}]+)*)/iu;

const FRAME_NOUNS = new Set(['document', 'article', 'report', 'section', 'sections', 'notes', 'guide']);

/**
 * The definite phrase a sentence opens with (`The high ratio`) when nothing in `before` introduces
 * it, else null. `before` is what a reader has read first: the passage or document up to the
 * sentence, with its title and headings. The phrase is its opening words up to the first stopword
 * (`The queue decouples producers` → `queue`, `decouples`, `producers`); it counts as introduced
 * when any of them occurs in `before` (compared by stem, so `ratios` introduces `ratio`): a false
 * alarm would cost a good sentence, a missed one only a slightly abrupt one.
 */
export function unresolvedReference(sentence: string, before: string): string | null {
  const plain = stripCitations(sentence).replace(/^["'(“‘]+/u, '');
  const m = DEFINITE.exec(plain);
  if (!m) return null;
  const words: string[] = [];
  for (const w of (m[2] ?? '').split(/\s+/u)) {
    if (!isContentWord(w.toLowerCase())) break;
    words.push(w);
  }
  // "The section on delivery...", "The document...": the writer's own framing names what it means.
  if (words.length === 0 || FRAME_NOUNS.has((words[0] as string).toLowerCase())) return null;
  const known = new Set(contentStems(before));
  if (words.some((w) => known.has(stem(w.toLowerCase())))) return null;
  return `${m[1]} ${words.join(' ')}`;
}

/** The stems that set a section's heading apart from the topic (all of them when it is nothing but topic words). */
export function sectionStems(heading: string, topic: ReadonlySet<string>): Set<string> {
  const all = new Set(contentStems(heading));
  const own = new Set([...all].filter((s) => !topic.has(s)));
  return own.size ? own : all;
}

/**
 * How much a quoted sentence is about a section, in [0, 2]: the share of the heading's stems
 * (`sectionStems`) the sentence uses, plus the share found in the headings it was quoted under
 * (its source's title and section heading: a sentence under "Times by tea type" is about times).
 * Shares, not counts, so a three-word heading does not outbid a one-word one. The writer places
 * each sentence by this rule and verification checks placement by the same one.
 */
export function sectionAffinity(sentence: string, context: string, heading: ReadonlySet<string>): number {
  if (heading.size === 0) return 0;
  const own = new Set(contentStems(stripCitations(sentence)));
  const around = new Set(contentStems(context));
  let hits = 0;
  for (const s of heading) hits += (own.has(s) ? 1 : 0) + (around.has(s) ? 1 : 0);
  return hits / heading.size;
}

/**
 * The heading a quoted sentence belongs under instead of `current`, or undefined when it may stay:
 * it says nothing of its own section (`sectionAffinity` 0, the headings it was quoted under
 * included) and something of another, the one it says most of (the earlier on a tie). `context`
 * is what the sentence was written under in its source (title and heading); `headings` are the
 * body sections' headings, `topic` the topic's stems (which say nothing about placement).
 */
export function betterSection(
  sentence: string,
  context: string,
  current: string,
  headings: readonly string[],
  topic: ReadonlySet<string>,
): string | undefined {
  if (sectionAffinity(sentence, context, sectionStems(current, topic)) > 0) return undefined;
  let best: string | undefined;
  let bestAffinity = 0;
  for (const h of headings) {
    if (sentenceKey(h) === sentenceKey(current)) continue;
    const a = sectionAffinity(sentence, context, sectionStems(h, topic));
    if (a > bestAffinity) {
      best = h;
      bestAffinity = a;
    }
  }
  return best;
}
