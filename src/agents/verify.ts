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
} from './protocol.js';
import {
  LENGTH_TOLERANCE,
  MAX_QUOTES_PER_PASSAGE,
  SUPPORT_THRESHOLD,
  citationNumbers,
  contentStems,
  isRepeat,
  keyTerms,
  lengthBounds,
  sentenceKey,
  stem,
  stripCitations,
  support,
} from './text.js';

/** Weights of the overall score. */
export const SCORE_WEIGHTS = { citations: 0.4, coverage: 0.3, length: 0.2, structure: 0.1 } as const;

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
    check(model.sections.some((s) => headingCovers(s.heading, requirement)), {
      kind: 'structure',
      section: requirement,
      message: `no section covers the requirement '${requirement}'`,
    });
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

/**
 * Verifies a document. With `sources` (the cited files' lines) every reference is checked against
 * the file itself; without, against the researched passages. Problems come in this order:
 * structure, repetition, citations (in document order), length, coverage.
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

  const scores = { citations: round(citations), length: round(length), coverage: round(coverage), structure: round(structure) };
  const score = round(
    SCORE_WEIGHTS.citations * citations + SCORE_WEIGHTS.coverage * coverage + SCORE_WEIGHTS.length * length + SCORE_WEIGHTS.structure * structure,
  );
  const repetition = structureProblems.filter((p) => p.kind === 'repetition');
  const problems = [
    ...structureProblems.filter((p) => p.kind !== 'repetition'),
    ...repetition,
    ...citationProblems,
    ...lengthProblems,
    ...coverageProblems,
  ];
  return { score, scores, problems, words, terms };
}
