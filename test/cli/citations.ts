import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One `[n] Title, source, lines line-endLine` entry of a References section. */
export interface ReferenceEntry {
  n: number;
  /** The source's title (its first heading). */
  title: string;
  source: string;
  line: number;
  endLine: number;
}

/** A body sentence that carries citation markers. */
export interface CitedSentence {
  text: string;
  numbers: number[];
}

/** Splits a produced document into its cited sentences and its reference list (independently of the agents' parser). */
export function readCitations(markdown: string): { sentences: CitedSentence[]; references: ReferenceEntry[] } {
  const at = markdown.search(/^## References\s*$/m);
  if (at < 0) throw new Error('the document has no "## References" section');
  const body = markdown.slice(0, at);
  const references: ReferenceEntry[] = [];
  for (const line of markdown.slice(at).split('\n').slice(1)) {
    if (line.trim() === '') continue;
    // `[n] Title, file.md, lines 3-5` (or `line 3`): what a reader can follow.
    const m = /^\[(\d+)\]\s+(.+),\s+(\S+\.(?:md|markdown|txt)),\s+lines?\s+(\d+)(?:-(\d+))?$/.exec(line.trim());
    if (!m) throw new Error(`unreadable reference line (expected \`[n] Title, file, lines a-b\`): ${line}`);
    references.push({ n: Number(m[1]), title: m[2]!, source: m[3]!, line: Number(m[4]), endLine: Number(m[5] ?? m[4]) });
  }
  const sentences: CitedSentence[] = [];
  for (const paragraph of body.split(/\n\s*\n/)) {
    if (/^#/.test(paragraph.trim())) continue;
    for (const sentence of paragraph.replace(/\n/g, ' ').split(/(?<=[.!?])\s+(?=[A-Z])/)) {
      const numbers = [...sentence.matchAll(/\[(\d+(?:\s*,\s*\d+)*)\]/g)].flatMap((m) => m[1]!.split(',').map((x) => Number(x.trim())));
      if (numbers.length) sentences.push({ text: sentence.replace(/\s*\[\d+(?:\s*,\s*\d+)*\]/g, ''), numbers });
    }
  }
  return { sentences, references };
}

const words = (text: string) => new Set((text.toLowerCase().match(/[a-z][a-z'-]{3,}/g) ?? []).map((w) => w.replace(/'s$/, '')));

/** Share of a sentence's words (4+ letters) found in `source`. */
export function overlap(sentence: string, source: string): number {
  const s = words(sentence);
  if (s.size === 0) return 1;
  const src = words(source);
  return [...s].filter((w) => src.has(w)).length / s.size;
}

/**
 * Every problem with the citations of `markdown` against the files in `sourcesDir`: markers
 * without a reference, references to missing files or lines, cited sentences the cited lines
 * do not support. Empty when every citation resolves.
 */
export function citationProblems(markdown: string, sourcesDir: string, minOverlap = 0.5): string[] {
  const { sentences, references } = readCitations(markdown);
  const problems: string[] = [];
  const byNumber = new Map(references.map((r) => [r.n, r]));
  if (sentences.length === 0) problems.push('the document cites nothing');
  for (const ref of references) {
    const file = join(sourcesDir, ref.source);
    if (!existsSync(file)) {
      problems.push(`[${ref.n}] names ${ref.source}, which is not in ${sourcesDir}`);
      continue;
    }
    const lines = readFileSync(file, 'utf8').split('\n');
    const heading = lines
      .find((l) => /^#{1,6}\s/.test(l))
      ?.replace(/^#+\s+/, '')
      .trim();
    if (heading !== undefined && ref.title !== heading)
      problems.push(`[${ref.n}] is titled '${ref.title}', but ${ref.source} is headed '${heading}'`);
    if (ref.line < 1 || ref.endLine < ref.line || ref.endLine > lines.length) {
      problems.push(`[${ref.n}] ${ref.source}:${ref.line}-${ref.endLine} is outside the file's ${lines.length} lines`);
    } else if (
      lines
        .slice(ref.line - 1, ref.endLine)
        .join(' ')
        .trim() === ''
    ) {
      problems.push(`[${ref.n}] ${ref.source}:${ref.line}-${ref.endLine} is blank`);
    }
  }
  for (const s of sentences) {
    for (const n of s.numbers) {
      const ref = byNumber.get(n);
      if (!ref) {
        problems.push(`[${n}] is cited but not in References: "${s.text}"`);
        continue;
      }
      const file = join(sourcesDir, ref.source);
      if (!existsSync(file)) continue;
      const cited = readFileSync(file, 'utf8')
        .split('\n')
        .slice(ref.line - 1, ref.endLine)
        .join(' ');
      const share = overlap(s.text, cited);
      if (share < minOverlap) {
        problems.push(
          `[${n}] ${ref.source}:${ref.line}-${ref.endLine} does not support "${s.text}" (${Math.round(share * 100)}% of its words)`,
        );
      }
    }
  }
  return problems;
}
