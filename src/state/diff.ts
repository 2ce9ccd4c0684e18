import { diffComm } from 'node-diff3';

/** One line of a diff: kept (`' '`), removed (`'-'`) or added (`'+'`). */
interface DiffLine {
  op: ' ' | '-' | '+';
  text: string;
  /** 1-based line in the old text (for kept and removed lines). */
  oldLine: number;
  /** 1-based line in the new text (for kept and added lines). */
  newLine: number;
}

/** Splits text into lines; a trailing newline does not make an extra empty line. */
export function splitLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function diffLines(a: string[], b: string[]): DiffLine[] {
  const out: DiffLine[] = [];
  let oldLine = 1;
  let newLine = 1;
  for (const block of diffComm(a, b)) {
    if (block.common) {
      for (const text of block.common) out.push({ op: ' ', text, oldLine: oldLine++, newLine: newLine++ });
    } else {
      for (const text of block.buffer1) out.push({ op: '-', text, oldLine: oldLine++, newLine });
      for (const text of block.buffer2) out.push({ op: '+', text, oldLine, newLine: newLine++ });
    }
  }
  return out;
}

function range(start: number, count: number): string {
  // diff(1) convention: an empty range names the line before it.
  if (count === 0) return `${start - 1},0`;
  return count === 1 ? `${start}` : `${start},${count}`;
}

/**
 * A unified diff (as `diff -u` prints it) between two texts, with `context` lines around each
 * change. Empty string when the texts have the same lines.
 *
 * @example
 * unifiedDiff('a\nb\n', 'a\nc\n', { fromLabel: 'v1', toLabel: 'v2' })
 * // --- v1\n+++ v2\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n
 */
export function unifiedDiff(
  oldText: string,
  newText: string,
  options: { fromLabel?: string; toLabel?: string; context?: number } = {},
): string {
  const context = options.context ?? 3;
  const lines = diffLines(splitLines(oldText), splitLines(newText));
  const changed = lines.map((l, i) => (l.op === ' ' ? -1 : i)).filter((i) => i >= 0);
  if (changed.length === 0) return '';

  // Group changes whose context windows touch into hunks.
  const hunks: Array<[number, number]> = [];
  for (const i of changed) {
    const start = Math.max(0, i - context);
    const end = Math.min(lines.length - 1, i + context);
    const last = hunks[hunks.length - 1];
    if (last && start <= last[1] + 1) last[1] = end;
    else hunks.push([start, end]);
  }

  const out: string[] = [`--- ${options.fromLabel ?? 'a'}`, `+++ ${options.toLabel ?? 'b'}`];
  for (const [start, end] of hunks) {
    const slice = lines.slice(start, end + 1);
    const first = slice[0];
    if (!first) continue;
    const oldCount = slice.filter((l) => l.op !== '+').length;
    const newCount = slice.filter((l) => l.op !== '-').length;
    out.push(`@@ -${range(first.oldLine, oldCount)} +${range(first.newLine, newCount)} @@`);
    for (const l of slice) out.push(l.op + l.text);
  }
  return out.join('\n') + '\n';
}

/** Counts of added and removed lines between two texts. */
export function diffStat(oldText: string, newText: string): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  for (const l of diffLines(splitLines(oldText), splitLines(newText))) {
    if (l.op === '+') added++;
    else if (l.op === '-') removed++;
  }
  return { added, removed };
}
