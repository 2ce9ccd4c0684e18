/**
 * The verification agent's pure half: checks a document's citations against the sources, its
 * length against the target, its coverage of the topic's key terms and its structure, and turns
 * the findings into scores in [0, 1] and a list of concrete problems.
 */
import { type DocumentModel, type Reference, documentSentences, documentWords, parseDocument } from './markdown.js';
import {
  DEFAULT_WORDS,
  type Passage,
  type Problem,
  type VerificationResult,
  type VerificationTask,
  isLeadPassage,
  passageContext,
} from './payloads.js';
import {
  LENGTH_TOLERANCE,
  MAX_QUOTES_PER_PASSAGE,
  SUPPORT_THRESHOLD,
  FRAMING_WORDS,
  GENERIC_TOPIC_WORDS,
  betterSection,
  citationNumbers,
  contentStems,
  contextWord,
  unresolvedReference,
  isRecap,
  isRepeat,
  sectionAffinity,
  sectionStems,
  keyTerms,
  lengthBounds,
  sentenceKey,
  splitSentences,
  stem,
  stripCitations,
  support,
} from './text.js';

/** The highest score a document gets while any citation leads nowhere (below every sensible threshold). */
export const UNRESOLVED_CITATION_CAP = 0.5;

/** Weights of the overall score. */
export const SCORE_WEIGHTS = { citations: 0.35, coverage: 0.25, length: 0.15, coherence: 0.15, structure: 0.1 } as const;

/**
 * The text of the source files the document cites, by path relative to the sources directory:
 * the file's lines, or null when there is no such file (or it lies outside the directory).
 */
export type SourceLines = ReadonlyMap<string, readonly string[] | null>;

const round = (x: number): number => Math.round(x * 1e4) / 1e4;

function excerpt(sentence: string, max = 70): string {
  const s = stripCitations(sentence);
  return `"${s.length > max ? s.slice(0, max - 1) + '…' : s}"`;
}

function place(heading: string): string {
  return heading ? `'${heading}'` : 'the opening';
}

/** The length sub-score: 1 within the tolerance, then falling linearly to 0 at 50 points beyond it. */
export function lengthScore(words: number, target: number, tolerance = LENGTH_TOLERANCE): number {
  const { min, max } = lengthBounds(target, tolerance);
  if (words >= min && words <= max) return 1;
  const deviation = Math.abs(words - target) / target;
  return Math.max(0, Math.min(1, 1 - (deviation - tolerance) * 2));
}

/** Is `heading` the section for `requirement` (its heading holds every content word of the requirement)? */
export function headingCovers(heading: string, requirement: string): boolean {
  const h = new Set(contentStems(heading));
  const r = contentStems(requirement);
  return r.length > 0 && r.every((s) => h.has(s));
}

interface Resolution {
  text?: string;
  problem?: string;
}

/** Where a reference points: the cited lines of the file (preferred) or of a researched passage. */
function resolveReference(ref: Reference, passages: readonly Passage[], sources: SourceLines | undefined): Resolution {
  const where = `${ref.source}:${ref.line}-${ref.endLine}`;
  const lines = sources?.get(ref.source);
  if (lines === null) return { problem: `points to ${where}, but \`${ref.source}\` is not a file in the sources` };
  if (lines !== undefined) {
    if (ref.line < 1 || ref.endLine < ref.line || ref.endLine > lines.length) {
      return { problem: `points to lines ${ref.line}-${ref.endLine} of \`${ref.source}\`, which has ${lines.length} lines` };
    }
    const text = lines.slice(ref.line - 1, ref.endLine).join('\n');
    if (text.trim() === '') return { problem: `points to ${where}, which is blank` };
    return { text };
  }
  const passage = passages.find((p) => p.source === ref.source && p.line <= ref.line && ref.endLine <= p.endLine);
  return passage ? { text: passage.text } : { problem: `points to ${where}, which is none of the researched passages` };
}

function checkCitations(model: DocumentModel, task: VerificationTask, sources: SourceLines | undefined, problems: Problem[]): number {
  const byNumber = new Map<number, Reference>();
  let bad = 0;
  for (const ref of model.references) {
    if (byNumber.has(ref.n)) {
      problems.push({ kind: 'citation', citation: ref.n, message: `reference [${ref.n}] is listed more than once in References` });
      bad++;
    } else byNumber.set(ref.n, ref);
  }
  for (const line of model.malformedReferences) {
    problems.push({ kind: 'citation', message: `References line is not \`[n] source:line-endLine\`: \`${line}\`` });
    bad++;
  }
  const resolved = new Map<number, Resolution>();
  const used = new Set<number>();
  let total = 0;
  let ok = 0;
  for (const s of documentSentences(model)) {
    for (const n of citationNumbers(s.text)) {
      total++;
      used.add(n);
      const base = { kind: 'citation' as const, citation: n, section: s.heading, sentence: s.text };
      const ref = byNumber.get(n);
      if (!ref) {
        problems.push({ ...base, message: `citation [${n}] in ${place(s.heading)} has no entry in References` });
        continue;
      }
      let r = resolved.get(n);
      if (!r) resolved.set(n, (r = resolveReference(ref, task.passages, sources)));
      if (r.problem !== undefined || r.text === undefined) {
        problems.push({ ...base, message: `citation [${n}] in ${place(s.heading)} ${r.problem ?? 'does not resolve'}` });
        continue;
      }
      const share = support(s.text, r.text);
      if (share < SUPPORT_THRESHOLD) {
        problems.push({
          ...base,
          message: `${excerpt(s.text)} in ${place(s.heading)} is not supported by [${n}] ${ref.source}:${ref.line}-${ref.endLine}: only ${Math.round(share * 100)}% of its words are there`,
        });
        continue;
      }
      ok++;
    }
  }
  // Copying a paragraph is not writing: flag a section that quotes one passage too often.
  const quotes = new Map<string, { heading: string; n: number; count: number }>();
  for (const s of documentSentences(model)) {
    const nums = citationNumbers(s.text);
    const n = nums[0];
    if (nums.length !== 1 || n === undefined) continue;
    const key = `${s.section}\u0000${n}`;
    const q = quotes.get(key) ?? { heading: s.heading, n, count: 0 };
    q.count++;
    quotes.set(key, q);
  }
  for (const q of quotes.values()) {
    if (q.count <= MAX_QUOTES_PER_PASSAGE) continue;
    const ref = byNumber.get(q.n);
    problems.push({
      kind: 'citation',
      citation: q.n,
      section: q.heading,
      message: `${place(q.heading)} takes ${q.count} sentences from [${q.n}]${ref ? ` ${ref.source}:${ref.line}-${ref.endLine}` : ''}; use at most ${MAX_QUOTES_PER_PASSAGE} from one passage per section and draw on other sources`,
    });
    // Each quote beyond the limit is a citation use that does not count as good.
    ok -= q.count - MAX_QUOTES_PER_PASSAGE;
  }
  for (const n of byNumber.keys()) {
    if (!used.has(n)) {
      problems.push({ kind: 'citation', citation: n, message: `reference [${n}] is never cited in the text` });
      bad++;
    }
  }
  if (total === 0) {
    problems.push({ kind: 'citation', message: 'the document cites no sources: no sentence carries a [n] citation' });
    return 0;
  }
  return Math.max(0, ok) / (total + bad);
}

function checkStructure(model: DocumentModel, task: VerificationTask, problems: Problem[]): number {
  let checks = 0;
  let passed = 0;
  const check = (ok: boolean, problem: Problem): void => {
    checks++;
    if (ok) passed++;
    else problems.push(problem);
  };
  check(model.title !== null, { kind: 'structure', message: "the document has no '# ' title as its first heading" });
  const extraTitles = model.sections.filter((s) => s.level === 1);
  check(extraTitles.length === 0, {
    kind: 'structure',
    section: extraTitles[0]?.heading ?? '',
    message: `only the title may be a '# ' heading; also found ${extraTitles.map((s) => `'${s.heading}'`).join(', ')}`,
  });
  check(model.sections.length > 0, { kind: 'structure', message: "the document has no '## ' sections" });
  for (const requirement of task.requirements ?? []) {
    if (contentStems(requirement).length === 0) continue;
    check(
      model.sections.some((s) => headingCovers(s.heading, requirement)),
      {
        kind: 'structure',
        section: requirement,
        message: `no section covers the requirement '${requirement}'`,
      },
    );
  }
  for (const s of model.sections) {
    const key = sentenceKey(s.heading);
    const text = s.paragraphs.join('\n');
    if (stripCitations(text).trim() === '') {
      check(false, { kind: 'structure', section: s.heading, message: `section '${s.heading}' is empty` });
    } else if (key !== 'introduction' && key !== 'conclusion') {
      check(citationNumbers(text).length > 0, { kind: 'structure', section: s.heading, message: `section '${s.heading}' cites no source` });
    }
  }
  check(model.referencesHeading !== null, { kind: 'structure', message: "the document has no '## References' section" });

  const seen: { text: string; heading: string }[] = [];
  let repeats = 0;
  for (const s of documentSentences(model)) {
    // A conclusion restates what the body said (its own check is for new claims): only its cited sentences can repeat.
    if (isRecap(s)) continue;
    const first = seen.find((k) => isRepeat(k.text, s.text));
    if (first) {
      repeats++;
      problems.push({
        kind: 'repetition',
        section: s.heading,
        sentence: s.text,
        message: `${excerpt(s.text)} in ${place(s.heading)} repeats a sentence of ${place(first.heading)}`,
      });
    } else seen.push(s);
  }
  checks++;
  if (repeats === 0) passed++;
  return passed / checks;
}

const isFrame = (heading: string): boolean => ['introduction', 'conclusion'].includes(sentenceKey(heading));

/** The researched passage a reference points into, if any. */
function passageOf(ref: Reference | undefined, passages: readonly Passage[]): Passage | undefined {
  return ref && passages.find((p) => p.source === ref.source && p.line <= ref.line && ref.endLine <= p.endLine);
}

/**
 * What a reader trips over: a sentence leaning on one that is not there (a paragraph opening
 * "Most systems therefore..."), a body section that strays from its heading, a conclusion that
 * says what the body did not. Returns the share of checks passed.
 */
function checkCoherence(model: DocumentModel, task: VerificationTask, problems: Problem[]): number {
  let checks = 0;
  let passed = 0;
  const sentences = documentSentences(model);

  // Each paragraph: every sentence that leans on context follows one citing the same source.
  const paragraphs = new Map<string, typeof sentences>();
  for (const s of sentences) {
    const key = `${s.section}:${s.paragraph}`;
    paragraphs.set(key, [...(paragraphs.get(key) ?? []), s]);
  }
  const byNumber = new Map(model.references.map((r) => [r.n, r] as const));
  // What a reader has met before each sentence: title, topic, requirements, the headings so far, the sentences above.
  const unresolved = new Map<(typeof sentences)[number], string>();
  let read = [model.title ?? '', task.topic, ...(task.requirements ?? [])].join('\n');
  let section = -1;
  for (const s of sentences) {
    for (; section < s.section; section++) read += `\n${model.sections[section + 1]?.heading ?? ''}`;
    // The headings of the passages it cites introduce what the writer quoted under them.
    const cited = citationNumbers(s.text).map((n) => passageOf(byNumber.get(n), task.passages));
    const phrase = unresolvedReference(s.text, [read, ...cited.map((p) => `${p?.title ?? ''}\n${p?.heading ?? ''}`)].join('\n'));
    if (phrase !== null) unresolved.set(s, phrase);
    read += `\n${stripCitations(s.text)}`;
  }
  for (const list of paragraphs.values()) {
    checks++;
    let ok = true;
    list.forEach((s, i) => {
      const phrase = unresolved.get(s);
      if (phrase !== undefined) {
        ok = false;
        problems.push({
          kind: 'coherence',
          section: s.heading,
          sentence: s.text,
          message: `${excerpt(s.text)} in ${place(s.heading)} speaks of '${phrase}' as if it were known, but nothing before it in the document introduces it`,
        });
        return;
      }
      const word = contextWord(s.text);
      if (word === null) return;
      const previous = list[i - 1];
      const mine = citationNumbers(s.text);
      const theirs = previous ? citationNumbers(previous.text) : [];
      const follows = previous !== undefined && (mine.length === 0 ? theirs.length === 0 : mine.some((n) => theirs.includes(n)));
      if (follows) return;
      ok = false;
      problems.push({
        kind: 'coherence',
        section: s.heading,
        sentence: s.text,
        message: `${excerpt(s.text)} in ${place(s.heading)} leans on '${word}' but ${previous ? 'the sentence before it comes from another source' : 'opens its paragraph'}: nothing it could refer to precedes it`,
      });
    });
    if (ok) passed++;
  }

  // Each body section: at least half its cited sentences are about its heading (by the rule the
  // writer places sentences with: their words or the headings they were quoted under).
  const topic = new Set(contentStems(task.topic));
  const bodyHeadings = model.sections.filter((s) => !isFrame(s.heading)).map((s) => s.heading);
  const contextOf = (s: (typeof sentences)[number]): string => {
    const p = passageOf(byNumber.get(citationNumbers(s.text)[0] ?? -1), task.passages);
    return p ? passageContext(p) : '';
  };
  model.sections.forEach((section, i) => {
    if (isFrame(section.heading)) return;
    const h = sectionStems(section.heading, topic);
    if ([...h].every((st) => topic.has(st))) return;
    const cited = sentences.filter((s) => s.section === i && citationNumbers(s.text).length > 0);
    if (cited.length === 0) return;
    checks++;
    const about = cited.filter((s) => sectionAffinity(s.text, contextOf(s), h) > 0).length;
    if (about * 2 >= cited.length) passed++;
    else {
      problems.push({
        kind: 'coherence',
        section: section.heading,
        message: `section '${section.heading}' strays from its heading: only ${about} of its ${cited.length} cited sentences are about ${[...h].join(', ')}`,
      });
    }
  });

  // Each cited sentence under the section it is about: none says nothing of its own section and
  // something of another (in the introduction: a detail quoted from under a source's subheading).
  sentences.forEach((s, k) => {
    const heading = model.sections[s.section]?.heading ?? '';
    const intro = sentenceKey(heading) === 'introduction';
    if ((isFrame(heading) && !intro) || s.section < 0 || citationNumbers(s.text).length === 0) return;
    const passage = passageOf(byNumber.get(citationNumbers(s.text)[0] ?? -1), task.passages);
    if (intro && (passage === undefined || isLeadPassage(passage))) return;
    // A sentence leaning on the one before it (same source) is placed with it: judge the two together.
    const before = sentences[k - 1];
    const joined =
      before && before.section === s.section && before.paragraph === s.paragraph && contextWord(s.text) !== null
        ? `${before.text} ${s.text}`
        : s.text;
    checks++;
    const better = betterSection(joined, passage ? passageContext(passage) : '', heading, bodyHeadings, topic);
    if (better === undefined) {
      passed++;
      return;
    }
    problems.push({
      kind: 'coherence',
      section: heading,
      sentence: s.text,
      message: `${excerpt(s.text)} in ${place(heading)} is about '${better}', not '${heading}': it belongs under '${better}'`,
    });
  });

  // The conclusion: nothing the body did not say.
  const last = model.sections.length - 1;
  const conclusion = model.sections[last];
  if (conclusion && sentenceKey(conclusion.heading) === 'conclusion') {
    const body = sentences.filter((s) => s.section !== last);
    const bodyStems = new Set([
      ...body.flatMap((s) => contentStems(stripCitations(s.text))),
      ...model.sections.flatMap((s) => contentStems(s.heading)),
      ...contentStems([model.title ?? '', task.topic, ...(task.requirements ?? [])].join(' ')),
      // The headings of the source sections the body cites: what the body drew on.
      ...body
        .flatMap((s) => citationNumbers(s.text))
        .flatMap((n) => contentStems(passageOf(byNumber.get(n), task.passages)?.heading ?? '')),
    ]);
    const bodyCitations = new Set(body.flatMap((s) => citationNumbers(s.text)));
    for (const s of sentences.filter((x) => x.section === last)) {
      checks++;
      const fresh = [...new Set(contentStems(stripCitations(s.text)))].filter((st) => !bodyStems.has(st) && !FRAMING_WORDS.has(st));
      const all = new Set(contentStems(stripCitations(s.text))).size;
      const newSources = citationNumbers(s.text).filter((n) => !bodyCitations.has(n));
      if (newSources.length === 0 && fresh.length <= Math.floor(all * 0.2)) {
        passed++;
        continue;
      }
      problems.push({
        kind: 'coherence',
        section: conclusion.heading,
        sentence: s.text,
        message:
          `${excerpt(s.text)} in ${place(conclusion.heading)} says what the body did not` +
          (newSources.length
            ? ` (it cites [${newSources.join(', ')}], which no earlier section cites)`
            : ` (${fresh
                .slice(0, 4)
                .map((w) => `'${w}'`)
                .join(', ')} appear nowhere above)`) +
          ': a conclusion sums up, it adds no new facts',
      });
    }
  }
  return checks === 0 ? 1 : passed / checks;
}

/**
 * Do the sources cover the topic? Each of the topic's key terms (generic words such as `overview`
 * aside) must name a heading of the researched material, be what some sentence is about (among
 * its first content words), or appear in at least two researched passages: a word met once in passing (`never store tea next to coffee beans`) does not make
 * notes on tea a source on coffee. Returns the share of terms covered; each term not covered is a
 * `topic` problem no revision can fix.
 */
function checkTopic(task: VerificationTask, problems: Problem[]): number {
  const terms = keyTerms(task.topic).filter((t) => !GENERIC_TOPIC_WORDS.has(stem(t)));
  if (terms.length === 0) return 1;
  const headings = new Set(task.passages.flatMap((p) => contentStems(`${p.title ?? ''}\n${p.heading ?? ''}`)));
  const mentions = new Map<string, number>();
  // What sentences are about: the first content words of each (their subject, roughly).
  const subjects = new Set<string>();
  for (const p of task.passages) {
    for (const st of new Set(contentStems(p.text))) mentions.set(st, (mentions.get(st) ?? 0) + 1);
    for (const sentence of splitSentences(p.text)) for (const st of contentStems(sentence).slice(0, 3)) subjects.add(st);
  }
  const missing: string[] = [];
  const passing: string[] = [];
  for (const t of terms) {
    const st = stem(t);
    const n = mentions.get(st) ?? 0;
    if (headings.has(st) || subjects.has(st) || n >= 2) continue;
    (n === 0 ? missing : passing).push(t);
  }
  const uncovered = [...missing, ...passing];
  if (uncovered.length > 0) {
    const quote = (list: string[]) => list.map((t) => `'${t}'`).join(', ');
    const why = [
      missing.length
        ? `${quote(missing)} appear${missing.length === 1 ? 's' : ''} in none of the ${task.passages.length} researched passages`
        : '',
      passing.length
        ? `${quote(passing)} ${passing.length === 1 ? 'is' : 'are'} mentioned only in passing (in one passage, in no heading, the subject of no sentence)`
        : '',
    ].filter(Boolean);
    problems.push({
      kind: 'topic',
      term: uncovered[0] as string,
      message: `the sources do not cover the topic '${task.topic}': ${why.join('; ')}. A document drawn from them would be about something else: choose a topic they cover, or add sources`,
    });
  }
  return (terms.length - uncovered.length) / terms.length;
}

/**
 * Verifies a document. With `sources` (the cited files' lines) every reference is checked against
 * the file itself; without, against the researched passages. Problems come in this order:
 * topic, structure, repetition, citations (in document order), coherence, length, coverage.
 */
export function verifyDocument(task: VerificationTask, sources?: SourceLines): VerificationResult {
  const model = parseDocument(task.content);
  const structureProblems: Problem[] = [];
  const citationProblems: Problem[] = [];
  const structure = checkStructure(model, task, structureProblems);
  const citations = checkCitations(model, task, sources, citationProblems);

  const target = task.words ?? DEFAULT_WORDS;
  const words = documentWords(model);
  const length = lengthScore(words, target);
  const lengthProblems: Problem[] = [];
  if (length < 1) {
    const bounds = lengthBounds(target);
    const side = words < target ? 'short' : 'long';
    lengthProblems.push({
      kind: 'length',
      expected: target,
      actual: words,
      message: `the document is too ${side}: ${words} words, expected ${target} ± ${Math.round(LENGTH_TOLERANCE * 100)}% (${bounds.min}..${bounds.max})`,
    });
  }

  const terms = keyTerms(task.topic, task.requirements ?? []);
  const citedStems = new Set<string>();
  for (const s of documentSentences(model)) {
    if (citationNumbers(s.text).length > 0) for (const st of contentStems(stripCitations(s.text))) citedStems.add(st);
  }
  const coverageProblems: Problem[] = [];
  for (const term of terms) {
    if (citedStems.has(stem(term))) continue;
    const requirement = (task.requirements ?? []).find((r) => contentStems(r).includes(stem(term)));
    const section = requirement && model.sections.find((s) => headingCovers(s.heading, requirement))?.heading;
    const problem: Problem = { kind: 'coverage', term, message: `key term '${term}' appears in no cited sentence` };
    if (section) problem.section = section;
    coverageProblems.push(problem);
  }
  const coverage = terms.length ? (terms.length - coverageProblems.length) / terms.length : 1;

  const coherenceProblems: Problem[] = [];
  const coherence = checkCoherence(model, task, coherenceProblems);
  const topicProblems: Problem[] = [];
  const topic = checkTopic(task, topicProblems);

  const scores = {
    citations: round(citations),
    length: round(length),
    coverage: round(coverage),
    structure: round(structure),
    coherence: round(coherence),
  };
  const weighted =
    SCORE_WEIGHTS.citations * citations +
    SCORE_WEIGHTS.coverage * coverage +
    SCORE_WEIGHTS.length * length +
    SCORE_WEIGHTS.structure * structure +
    SCORE_WEIGHTS.coherence * coherence;
  // A topic the sources do not cover caps everything: well-cited text about something else is not the document asked for.
  // A citation that leads nowhere (no reference, no such file or lines) is a fabrication: the draft cannot pass.
  const fabricated = citationProblems.some(
    (p) =>
      p.sentence !== undefined &&
      /has no entry in References| is not a file in the sources|which has \d+ lines|none of the researched passages/u.test(p.message),
  );
  const score = round(Math.min(weighted * topic, fabricated ? UNRESOLVED_CITATION_CAP : 1));
  const repetition = structureProblems.filter((p) => p.kind === 'repetition');
  const problems = [
    ...topicProblems,
    ...structureProblems.filter((p) => p.kind !== 'repetition'),
    ...repetition,
    ...citationProblems,
    ...coherenceProblems,
    ...lengthProblems,
    ...coverageProblems,
  ];
  return { score, scores, problems, words, terms };
}
