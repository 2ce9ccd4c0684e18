/**
 * The payloads the orchestrator sends the reference document agents and the results it gets back.
 * Plain JSON throughout, so they cross any transport unchanged. Each `parse*` guard checks a payload
 * at the agent's boundary and throws `ValidationError` saying what was expected and what came.
 */
import { ValidationError } from '../errors.js';
import { describeValue } from '../message.js';

/** A paragraph of a source file, as found by the research agent. */
export interface Passage {
  /** `source:line`, e.g. `delivery-guarantees.md:12`. Unique within one sources directory. */
  id: string;
  /** Path of the file relative to the sources directory, `/`-separated. */
  source: string;
  /** 1-based first line of the paragraph in that file. */
  line: number;
  /** 1-based last line (inclusive). */
  endLine: number;
  /** The paragraph, exactly as in the file (lines joined by `\n`). */
  text: string;
  /** Relevance to the query that selected it (higher is better; 0 when not ranked). */
  score: number;
  /** The nearest heading above the paragraph in its file, when there is one. */
  heading?: string;
  /** The file's title: its first heading, when it has one (named in References). */
  title?: string;
}

/** What a passage was written under: its source's title and its section heading. */
export function passageContext(p: Passage): string {
  return `${p.title ?? ''}\n${p.heading ?? ''}`;
}

/** True for a passage of a source's opening, under its title rather than a subheading: it introduces. */
export function isLeadPassage(p: Passage): boolean {
  return p.heading === undefined || p.heading === p.title;
}

/** What the research agent is asked. */
export interface ResearchTask {
  topic: string;
  requirements?: string[];
  /** Searches this text alone instead of the topic and each requirement. */
  query?: string;
  /** How many passages at most (1..100, default 16). */
  limit?: number;
}

/** What the research agent answers. */
export interface ResearchResult {
  /** Best first; ties broken by source path, then line. */
  passages: Passage[];
  /** How much was indexed. */
  indexed: { files: number; passages: number };
  /** Source files not read, each with the reason (too large, not text, a link leaving the folder). */
  skipped?: Array<{ source: string; reason: string }>;
}

/** One numbered citation of a document: `[n]` in the text, `[n] source:line-endLine` in References. */
export interface Citation {
  n: number;
  /** The cited passage's id (`source:line`). */
  passageId: string;
  source: string;
  line: number;
  endLine: number;
}

/**
 * The kinds of problem verification reports (and the writer acts on). `topic`: the sources do not
 * cover the topic (no revision can fix it); `coherence`: a sentence leans on one that is not there,
 * a section strays from its heading, or the conclusion says what the body did not.
 */
export type ProblemKind = 'citation' | 'length' | 'coverage' | 'structure' | 'repetition' | 'coherence' | 'topic';

/** One concrete problem found in a document. */
export interface Problem {
  kind: ProblemKind;
  /** Human-readable, names what is wrong and where. */
  message: string;
  /** The heading of the section concerned. */
  section?: string;
  /** The key term concerned (`coverage`). */
  term?: string;
  /** The citation number concerned (`citation`). */
  citation?: number;
  /** The sentence concerned, as it stands in the document (`citation`, `repetition`). */
  sentence?: string;
  /** The wanted value (`length`: words). */
  expected?: number;
  /** The value found (`length`: words). */
  actual?: number;
}

/**
 * What the writing agent is asked. With `draft` and `feedback` it revises the draft, changing only
 * what the problems criticise; the same payload may also come as a FEEDBACK message.
 */
export interface WritingTask {
  topic: string;
  requirements: string[];
  /** Target length of the prose in words (50..20000, default 400). */
  words?: number;
  /** The material: every factual sentence of the document comes from one of these. */
  passages: Passage[];
  /** The document to revise (Markdown). */
  draft?: string;
  /** What to fix in `draft`. */
  feedback?: Problem[];
}

/** What the writing agent answers. */
export interface WritingResult {
  /** The document, Markdown: `# title`, `## sections`, `## References`. */
  content: string;
  citations: Citation[];
  /** What a revision changed, one line per change (empty for a first draft). */
  revisions: string[];
}

/** What the editing agent is asked. */
export interface EditingTask {
  content: string;
  /** Target length in words; the document is trimmed to within ±15% of it. */
  words?: number;
  /** When given, sentences that alone carry one of the topic's key terms are never trimmed. */
  topic?: string;
  requirements?: string[];
}

/** What the editing agent answers. */
export interface EditingResult {
  content: string;
  /** One line per change made, in the order made. */
  changes: string[];
  /** Words of prose after editing (headings, citation markers and References excluded). */
  words: number;
}

/** What the verification agent is asked. */
export interface VerificationTask {
  content: string;
  topic: string;
  requirements?: string[];
  /** Target length in words (default 400). */
  words?: number;
  /** The passages the document may cite. */
  passages: Passage[];
}

/** Sub-scores, each in [0, 1]. */
export interface VerificationScores {
  /**
   * Share of citation uses that resolve to a real passage whose text supports the sentence; unused,
   * duplicate or malformed references and over-quoted passages count against it.
   */
  citations: number;
  /** 1 within ±15% of the target, falling linearly to 0 at ±65%. */
  length: number;
  /** Share of the key terms that appear in at least one cited sentence. */
  coverage: number;
  /** Share of the structural checks passed (title, sections, references, no repeats). */
  structure: number;
  /**
   * Share of the reading checks passed: no sentence leaning on one that is not there, every body
   * section about its heading, nothing in the conclusion the body did not say.
   */
  coherence: number;
}

/** What the verification agent answers. */
export interface VerificationResult {
  /**
   * Weighted mean of `scores` (citations 0.35, coverage 0.25, length 0.15, coherence 0.15, structure 0.1),
   * times the share of the topic's key terms the sources mention at all, in [0, 1].
   */
  score: number;
  scores: VerificationScores;
  /** Empty when nothing is wrong; otherwise one entry per concrete problem, in document order. */
  problems: Problem[];
  /** Words of prose counted. */
  words: number;
  /** The key terms checked for coverage. */
  terms: string[];
}

/** Default target length of a document, in words. */
export const DEFAULT_WORDS = 400;
/** Default number of passages research returns. */
export const DEFAULT_LIMIT = 16;

// ---------------------------------------------------------------- guards

function fail(what: string, field: string, expected: string, value: unknown): never {
  throw new ValidationError(`${what}: ${field} must be ${expected}, got ${describeValue(value, 40)}`, { field });
}

function record(what: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(what, 'payload', 'an object', value);
  return value as Record<string, unknown>;
}

function text(what: string, field: string, value: unknown, { empty = false } = {}): string {
  if (typeof value !== 'string') fail(what, field, 'a string', value);
  if (!empty && value.trim().length === 0) fail(what, field, 'a non-empty string', value);
  return value;
}

function texts(what: string, field: string, value: unknown): string[] {
  if (!Array.isArray(value)) fail(what, field, 'an array of strings', value);
  return value.map((v, i) => text(what, `${field}[${i}]`, v));
}

function integer(what: string, field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(what, field, `an integer ${min}..${max}`, value);
  }
  return value;
}

function optional<T>(value: unknown, read: (v: unknown) => T): T | undefined {
  return value === undefined ? undefined : read(value);
}

/** Checks one passage; `field` names it in messages (`passages[3]`). */
export function parsePassage(value: unknown, field = 'passage', what = 'passage'): Passage {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(what, field, 'an object', value);
  const o = value as Record<string, unknown>;
  const line = integer(what, `${field}.line`, o['line'], 1, Number.MAX_SAFE_INTEGER);
  const endLine = integer(what, `${field}.endLine`, o['endLine'], line, Number.MAX_SAFE_INTEGER);
  const score = o['score'];
  if (typeof score !== 'number' || !Number.isFinite(score)) fail(what, `${field}.score`, 'a finite number', score);
  const passage: Passage = {
    id: text(what, `${field}.id`, o['id']),
    source: text(what, `${field}.source`, o['source']),
    line,
    endLine,
    text: text(what, `${field}.text`, o['text']),
    score,
  };
  const heading = optional(o['heading'], (v) => text(what, `${field}.heading`, v, { empty: true }));
  if (heading !== undefined) passage.heading = heading;
  const title = optional(o['title'], (v) => text(what, `${field}.title`, v, { empty: true }));
  if (title !== undefined) passage.title = title;
  return passage;
}

function passages(what: string, value: unknown): Passage[] {
  if (!Array.isArray(value)) fail(what, 'passages', 'an array of passages', value);
  return value.map((p, i) => parsePassage(p, `passages[${i}]`, what));
}

const KINDS: ReadonlySet<string> = new Set(['citation', 'length', 'coverage', 'structure', 'repetition', 'coherence', 'topic']);

/** Checks one problem. */
export function parseProblem(value: unknown, field = 'problem', what = 'problem'): Problem {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(what, field, 'an object', value);
  const o = value as Record<string, unknown>;
  const kind = o['kind'];
  if (typeof kind !== 'string' || !KINDS.has(kind)) fail(what, `${field}.kind`, `one of ${[...KINDS].join(', ')}`, kind);
  const problem: Problem = { kind: kind as ProblemKind, message: text(what, `${field}.message`, o['message'], { empty: true }) };
  for (const key of ['section', 'term', 'sentence'] as const) {
    const v = optional(o[key], (x) => text(what, `${field}.${key}`, x, { empty: true }));
    if (v !== undefined) problem[key] = v;
  }
  for (const key of ['citation', 'expected', 'actual'] as const) {
    const v = optional(o[key], (x) => integer(what, `${field}.${key}`, x, 0, Number.MAX_SAFE_INTEGER));
    if (v !== undefined) problem[key] = v;
  }
  return problem;
}

function words(what: string, value: unknown): number | undefined {
  return optional(value, (v) => integer(what, 'words', v, 50, 20_000));
}

/** Checks a research task. */
export function parseResearchTask(payload: unknown): ResearchTask {
  const what = 'research task';
  const o = record(what, payload);
  const task: ResearchTask = { topic: text(what, 'topic', o['topic']) };
  const requirements = optional(o['requirements'], (v) => texts(what, 'requirements', v));
  if (requirements !== undefined) task.requirements = requirements;
  const query = optional(o['query'], (v) => text(what, 'query', v));
  if (query !== undefined) task.query = query;
  const limit = optional(o['limit'], (v) => integer(what, 'limit', v, 1, 100));
  if (limit !== undefined) task.limit = limit;
  return task;
}

/** Checks a writing task. `feedback` without `draft` is rejected: there is nothing to revise. */
export function parseWritingTask(payload: unknown): WritingTask {
  const what = 'writing task';
  const o = record(what, payload);
  const task: WritingTask = {
    topic: text(what, 'topic', o['topic']),
    requirements: o['requirements'] === undefined ? [] : texts(what, 'requirements', o['requirements']),
    passages: passages(what, o['passages']),
  };
  if (task.passages.length === 0) fail(what, 'passages', 'at least one passage to write from', o['passages']);
  const w = words(what, o['words']);
  if (w !== undefined) task.words = w;
  const draft = optional(o['draft'], (v) => text(what, 'draft', v));
  if (draft !== undefined) task.draft = draft;
  if (o['feedback'] !== undefined) {
    const fb = o['feedback'];
    if (!Array.isArray(fb)) fail(what, 'feedback', 'an array of problems', fb);
    task.feedback = fb.map((p, i) => parseProblem(p, `feedback[${i}]`, what));
    if (draft === undefined) fail(what, 'draft', 'the document to revise when feedback is given', undefined);
  }
  return task;
}

/** Checks an editing task. */
export function parseEditingTask(payload: unknown): EditingTask {
  const what = 'editing task';
  const o = record(what, payload);
  const task: EditingTask = { content: text(what, 'content', o['content']) };
  const w = words(what, o['words']);
  if (w !== undefined) task.words = w;
  const topic = optional(o['topic'], (v) => text(what, 'topic', v));
  if (topic !== undefined) task.topic = topic;
  const requirements = optional(o['requirements'], (v) => texts(what, 'requirements', v));
  if (requirements !== undefined) task.requirements = requirements;
  return task;
}

/** Checks a verification task. */
export function parseVerificationTask(payload: unknown): VerificationTask {
  const what = 'verification task';
  const o = record(what, payload);
  const task: VerificationTask = {
    content: text(what, 'content', o['content'], { empty: true }),
    topic: text(what, 'topic', o['topic']),
    passages: passages(what, o['passages']),
  };
  const requirements = optional(o['requirements'], (v) => texts(what, 'requirements', v));
  if (requirements !== undefined) task.requirements = requirements;
  const w = words(what, o['words']);
  if (w !== undefined) task.words = w;
  return task;
}
