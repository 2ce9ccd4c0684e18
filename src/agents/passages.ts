/**
 * The research agent's pure half: reading a directory of Markdown or text notes, splitting them
 * into paragraph passages with their line ranges, and ranking passages with MiniSearch (BM25+).
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import MiniSearch from 'minisearch';
import { ValidationError } from '../errors.js';
import { DEFAULT_LIMIT, type Passage, type ResearchTask } from './payloads.js';
import { type SkippedSource, type SourceReadOptions, readSource, sourcesRoot } from './sources.js';
import { isContentWord, stem, tokenize } from './text.js';

/** One source file: its path relative to the sources directory (`/`-separated) and its text. */
export interface SourceFile {
  path: string;
  text: string;
}

const SOURCE_EXTENSIONS = /\.(md|markdown|txt)$/iu;

/** Options of {@link loadSources}. */
export interface LoadSourcesOptions extends SourceReadOptions {
  /** Called for each file that is not read (too large, not text, a link leaving the folder). */
  onSkip?: (skipped: SkippedSource) => void;
}

/**
 * Reads every `.md`, `.markdown` and `.txt` file under `dir`, recursively, sorted by path, through
 * `readSource`: only regular files whose real path is inside `dir`, up to the size limit, and text.
 * A symlink to a file inside the folder is read once (under its own path when that is also walked);
 * linked directories are not followed. Skipped files are reported to `onSkip`, never silently lost.
 */
export async function loadSources(dir: string, options: LoadSourcesOptions = {}): Promise<SourceFile[]> {
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) {
    throw new ValidationError(`sourcesDir must be a directory of .md or .txt notes, got \`${dir}\``, { field: 'sourcesDir' });
  }
  const root = await sourcesRoot(dir);
  const files: string[] = [];
  const links: string[] = [];
  const walk = async (current: string): Promise<void> => {
    options.signal?.throwIfAborted();
    const entries = await readdir(current, { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (!SOURCE_EXTENSIONS.test(entry.name)) continue;
      else if (entry.isFile()) files.push(full);
      else if (entry.isSymbolicLink()) links.push(full);
    }
  };
  await walk(root);
  // A link to a file that is walked anyway would index the same text twice.
  const walked = new Set(files);
  for (const link of links) {
    const target = await realpath(link).catch(() => link);
    if (!walked.has(target)) files.push(link);
  }
  const out: SourceFile[] = [];
  for (const full of files.sort()) {
    options.signal?.throwIfAborted();
    const path = relative(root, full).split(sep).join('/');
    const read = await readSource(root, path, options);
    if ('text' in read) out.push({ path, text: read.text });
    else options.onSkip?.({ source: path, reason: read.skipped });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const yieldToEventLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

const HEADING = /^#{1,6}\s+(.*?)(?:\s+#+)?\s*$/u;
const FENCE = /^\s*(```|~~~)/u;

/**
 * Splits a file into passages: one per paragraph (a run of non-blank lines), with its 1-based line
 * range and the nearest heading above it. Headings, code blocks and front matter are not passages.
 */
export function splitPassages(file: SourceFile): Passage[] {
  const lines = file.text.replace(/\r\n?/gu, '\n').split('\n');
  const passages: Passage[] = [];
  let heading: string | undefined;
  let start = -1;
  let fenced = false;
  let i = 0;
  if (lines[0]?.trim() === '---') {
    const end = lines.indexOf('---', 1);
    if (end > 0) i = end + 1;
  }
  const flush = (endExclusive: number): void => {
    if (start < 0) return;
    const text = lines.slice(start, endExclusive).join('\n').replace(/\s+$/u, '');
    const passage: Passage = { id: `${file.path}:${start + 1}`, source: file.path, line: start + 1, endLine: endExclusive, text, score: 0 };
    if (heading !== undefined) passage.heading = heading;
    passages.push(passage);
    start = -1;
  };
  for (; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (FENCE.test(line)) {
      flush(i);
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    const h = HEADING.exec(line);
    if (h) {
      flush(i);
      heading = (h[1] ?? '').trim();
      continue;
    }
    if (line.trim() === '') flush(i);
    else if (start < 0) start = i;
  }
  flush(lines.length);
  const title = firstHeading(lines);
  if (title) for (const p of passages) p.title = title;
  return passages;
}

/** The text of a file's first heading outside code blocks and front matter, if any. */
function firstHeading(lines: readonly string[]): string | undefined {
  let fenced = false;
  for (const line of lines) {
    if (FENCE.test(line)) fenced = !fenced;
    if (fenced) continue;
    const h = HEADING.exec(line);
    if (h && (h[1] ?? '').trim()) return (h[1] ?? '').trim();
  }
  return undefined;
}

/** MiniSearch term processing: stopwords out, the shared light stem in. */
function processTerm(term: string): string | null {
  const t = term.toLowerCase();
  return isContentWord(t) ? stem(t) : null;
}

interface Indexed {
  id: number;
  text: string;
  heading: string;
  title: string;
}

/** Passages indexed between two yields to the event loop when building in the background. */
const INDEX_CHUNK = 500;

/** A searchable set of passages. Ranking is BM25+ (MiniSearch) with deterministic tie-breaking. */
export class PassageIndex {
  readonly #passages: Passage[];
  readonly #search: MiniSearch<Indexed>;
  readonly #titles = new Map<string, string>();
  /** How many files the passages came from. */
  readonly files: number;

  /** Indexes `passages` (headings weigh double, the file's title half again). */
  constructor(passages: readonly Passage[], options: { defer?: boolean } = {}) {
    this.#passages = [...passages];
    this.files = new Set(passages.map((p) => p.source)).size;
    this.#search = new MiniSearch<Indexed>({
      fields: ['text', 'heading', 'title'],
      tokenize: (text) => tokenize(text),
      processTerm,
      searchOptions: { boost: { heading: 2, title: 1.5 }, combineWith: 'OR', prefix: false, fuzzy: false },
    });
    for (const p of passages) if (!this.#titles.has(p.source) && p.heading !== undefined) this.#titles.set(p.source, p.heading);
    if (!options.defer) this.#add(0, this.#passages.length);
  }

  #add(from: number, to: number): void {
    const batch: Indexed[] = [];
    for (let id = from; id < to; id++) {
      const p = this.#passages[id] as Passage;
      batch.push({ id, text: p.text, heading: p.heading ?? '', title: this.#titles.get(p.source) ?? '' });
    }
    this.#search.addAll(batch);
  }

  /** Builds an index of every passage of `files`. */
  static fromFiles(files: readonly SourceFile[]): PassageIndex {
    return new PassageIndex(files.flatMap(splitPassages));
  }

  /**
   * Builds the same index as `fromFiles`, yielding to the event loop between files and every few
   * hundred passages, so a large folder neither blocks signals (Ctrl-C) nor ignores `signal`.
   */
  static async build(files: readonly SourceFile[], options: { signal?: AbortSignal } = {}): Promise<PassageIndex> {
    const passages: Passage[] = [];
    for (const file of files) {
      options.signal?.throwIfAborted();
      passages.push(...splitPassages(file));
      await yieldToEventLoop();
    }
    const index = new PassageIndex(passages, { defer: true });
    for (let from = 0; from < passages.length; from += INDEX_CHUNK) {
      options.signal?.throwIfAborted();
      index.#add(from, Math.min(passages.length, from + INDEX_CHUNK));
      await yieldToEventLoop();
    }
    return index;
  }

  /** How many passages are indexed. */
  get size(): number {
    return this.#passages.length;
  }

  /**
   * The passages matching `query`, best first, at most `limit`. Equal scores are ordered by
   * source path, then line, so the same query over the same files always gives the same list.
   */
  search(query: string, limit = DEFAULT_LIMIT): Passage[] {
    const hits = this.#search.search(query);
    const ranked = hits
      .map((hit) => ({ passage: this.#passages[hit.id as number], score: Math.round(hit.score * 1e6) / 1e6 }))
      .filter((h): h is { passage: Passage; score: number } => h.passage !== undefined && h.score > 0);
    ranked.sort(
      (a, b) =>
        b.score - a.score ||
        (a.passage.source < b.passage.source ? -1 : a.passage.source > b.passage.source ? 1 : 0) ||
        a.passage.line - b.passage.line,
    );
    return ranked.slice(0, limit).map((h) => ({ ...h.passage, score: h.score }));
  }
}

/**
 * The queries a research task stands for: its `query` alone, or the topic followed by each
 * requirement (each requirement searched on its own so every one finds its material).
 */
export function researchQueries(task: ResearchTask): string[] {
  if (task.query !== undefined) return [task.query];
  return [task.topic, ...(task.requirements ?? [])];
}

/**
 * Runs a research task: each query ranked on its own, then the lists merged round-robin (best of
 * each query first, then second best, ...) without repeats, up to `limit` passages.
 */
export function research(index: PassageIndex, task: ResearchTask): Passage[] {
  const limit = task.limit ?? DEFAULT_LIMIT;
  const lists = researchQueries(task).map((q) => index.search(q, limit));
  const seen = new Set<string>();
  const out: Passage[] = [];
  const longest = Math.max(0, ...lists.map((l) => l.length));
  for (let rank = 0; rank < longest && out.length < limit; rank++) {
    for (const list of lists) {
      const p = list[rank];
      if (p === undefined || seen.has(p.id)) continue;
      seen.add(p.id);
      out.push(p);
      if (out.length >= limit) break;
    }
  }
  return out;
}
