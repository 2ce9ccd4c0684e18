/**
 * The research agent's pure half: reading a directory of Markdown or text notes, splitting them
 * into paragraph passages with their line ranges, and ranking passages with MiniSearch (BM25+).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import MiniSearch from 'minisearch';
import { ValidationError } from '../errors.js';
import { DEFAULT_LIMIT, type Passage, type ResearchTask } from './protocol.js';
import { isContentWord, stem, tokenize } from './text.js';

/** One source file: its path relative to the sources directory (`/`-separated) and its text. */
export interface SourceFile {
  path: string;
  text: string;
}

const SOURCE_EXTENSIONS = /\.(md|markdown|txt)$/iu;

/** Reads every `.md`, `.markdown` and `.txt` file under `dir`, recursively, sorted by path. */
export async function loadSources(dir: string): Promise<SourceFile[]> {
  const info = await stat(dir).catch(() => null);
  if (!info?.isDirectory()) {
    throw new ValidationError(`sourcesDir must be a directory of .md or .txt notes, got \`${dir}\``, { field: 'sourcesDir' });
  }
  const paths: string[] = [];
  const walk = async (current: string): Promise<void> => {
    const entries = await readdir(current, { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && SOURCE_EXTENSIONS.test(entry.name)) paths.push(full);
    }
  };
  await walk(dir);
  const files = await Promise.all(
    paths.map(async (full) => ({ path: relative(dir, full).split(sep).join('/'), text: await readFile(full, 'utf8') })),
  );
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

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
  return passages;
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

/** A searchable set of passages. Ranking is BM25+ (MiniSearch) with deterministic tie-breaking. */
export class PassageIndex {
  readonly #passages: Passage[];
  readonly #search: MiniSearch<Indexed>;
  /** How many files the passages came from. */
  readonly files: number;

  /** Indexes `passages` (headings weigh double, the file's title half again). */
  constructor(passages: readonly Passage[]) {
    this.#passages = [...passages];
    this.files = new Set(passages.map((p) => p.source)).size;
    this.#search = new MiniSearch<Indexed>({
      fields: ['text', 'heading', 'title'],
      tokenize: (text) => tokenize(text),
      processTerm,
      searchOptions: { boost: { heading: 2, title: 1.5 }, combineWith: 'OR', prefix: false, fuzzy: false },
    });
    const titles = new Map<string, string>();
    for (const p of passages) if (!titles.has(p.source) && p.heading !== undefined) titles.set(p.source, p.heading);
    this.#search.addAll(
      this.#passages.map((p, id) => ({ id, text: p.text, heading: p.heading ?? '', title: titles.get(p.source) ?? '' })),
    );
  }

  /** Builds an index of every passage of `files`. */
  static fromFiles(files: readonly SourceFile[]): PassageIndex {
    return new PassageIndex(files.flatMap(splitPassages));
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
