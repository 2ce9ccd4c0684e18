import { diff3Merge, diffIndices } from 'node-diff3';
import type { MergeConflictRegion } from '../errors.js';

/** Lines added and removed between two texts. */
export interface LineDiffStats {
  added: number;
  removed: number;
}

/** The result of a three-way merge: the merged text, or the regions where both sides changed the same lines. */
export type MergeOutcome = { ok: true; content: string } | { ok: false; conflicts: MergeConflictRegion[] };

/** The lines of a text as `lineDiffStats` counts them: '' has none, and a trailing newline does not open one. */
export function countableLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * How many lines `after` adds to and removes from `before` (a changed line counts as one of
 * each), like `git diff --stat`; '' has no lines and a trailing newline does not open one.
 *
 * @example
 * lineDiffStats('a\nb\n', 'a\nB\nc\n') // { added: 2, removed: 1 }
 */
export function lineDiffStats(before: string, after: string): LineDiffStats {
  if (before === after) return { added: 0, removed: 0 };
  return lineDiffStatsOfLines(countableLines(before), countableLines(after));
}

/**
 * `lineDiffStats` of texts already split by `countableLines` (the state manager keeps the
 * lines of the version it writes on, so each content update splits only the new text). Common
 * leading and trailing lines are skipped first, so the usual edit (a changed paragraph of a
 * longer document) costs one comparison per line; only the lines in between go through a
 * longest common subsequence, by Myers' O(ND) algorithm.
 */
export function lineDiffStatsOfLines(a: readonly string[], b: readonly string[]): LineDiffStats {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const lenA = endA - start;
  const lenB = endB - start;
  if (lenA === 0 || lenB === 0) return { added: lenB, removed: lenA };
  // One line against several (a single-line edit lands here as 1 against 1): the longest
  // common subsequence is 1 if that line occurs on the other side, else 0.
  if (lenA === 1 || lenB === 1) {
    const [line, others, from, to] = lenA === 1 ? [a[start], b, start, endB] : [b[start], a, start, endA];
    let common = 0;
    for (let i = from; i < to; i++) {
      if (others[i] === line) {
        common = 1;
        break;
      }
    }
    return { added: lenB - common, removed: lenA - common };
  }
  if (lenA === 2 && lenB === 2) {
    // Two against two (say, one line restored and the next changed). The first lines differ and
    // so do the last (they would have been skipped as common otherwise), so at most one pair,
    // crosswise, is common.
    const common = a[start] === b[start + 1] || a[start + 1] === b[start] ? 1 : 0;
    return { added: 2 - common, removed: 2 - common };
  }
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  // Myers' greedy diff costs about (lines + differences²): cheap for the usual few changed lines
  // of a long middle. Past the budget, the hunk-based LCS or (larger still) the multiset count.
  const distance = editDistance(midA, midB, Math.floor(EXACT_DIFF_BUDGET / (lenA + lenB)));
  if (distance >= 0) {
    const common = (lenA + lenB - distance) / 2;
    return { added: lenB - common, removed: lenA - common };
  }
  if (lenA * lenB > EXACT_DIFF_BUDGET) return multisetStats(midA, midB);
  let added = 0;
  let removed = 0;
  for (const hunk of diffIndices(midA, midB)) {
    removed += hunk.buffer1[1];
    added += hunk.buffer2[1];
  }
  return { added, removed };
}

/** The diagonal array of `editDistance`, reused across calls (grown when needed). */
let diagonals = new Int32Array(256);

/**
 * The number of line insertions plus deletions that turn `a` into `b` (the longest common
 * subsequence is then (|a| + |b| - distance) / 2), by Myers' greedy algorithm ("An O(ND)
 * difference algorithm", 1986), or -1 when it exceeds `maxDistance`.
 */
function editDistance(a: readonly string[], b: readonly string[], maxDistance: number): number {
  const n = a.length;
  const m = b.length;
  const offset = n + m + 1;
  const limit = Math.min(maxDistance, n + m);
  // furthest[offset + k]: the furthest x reached so far on diagonal k = x - y. Only entries
  // written in an earlier round are read, and round 0 reads [offset + 1], so that one is reset.
  if (diagonals.length < 2 * offset + 1) diagonals = new Int32Array(2 * offset + 1);
  const furthest = diagonals;
  furthest[offset + 1] = 0;
  for (let d = 0; d <= limit; d++) {
    for (let k = -d; k <= d; k += 2) {
      const down = k === -d || (k !== d && furthest[offset + k - 1]! < furthest[offset + k + 1]!);
      let x = down ? furthest[offset + k + 1]! : furthest[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      furthest[offset + k] = x;
      if (x >= n && y >= m) return d;
    }
  }
  return -1;
}

/**
 * Above this many line pairs (about 5000 × 5000 changed lines) the LCS would take tens of
 * milliseconds and grows quadratically, so the summary counts lines by multiset difference
 * instead: exact for edits, insertions and deletions of distinct lines, an undercount only for
 * moved lines. It is a summary, not a patch.
 */
const EXACT_DIFF_BUDGET = 25_000_000;

function multisetStats(a: string[], b: string[]): LineDiffStats {
  const counts = new Map<string, number>();
  for (const line of a) counts.set(line, (counts.get(line) ?? 0) + 1);
  let added = 0;
  for (const line of b) {
    const n = counts.get(line) ?? 0;
    if (n > 0) counts.set(line, n - 1);
    else added++;
  }
  let removed = 0;
  for (const n of counts.values()) removed += n;
  return { added, removed };
}

/** The short history summary of a content change, e.g. `+12 -3 lines`. */
export function summarizeStats(stats: LineDiffStats): string {
  const { added, removed } = stats;
  if (added < SMALL_SUMMARIES && removed < SMALL_SUMMARIES)
    return (smallSummaries[added * SMALL_SUMMARIES + removed] ??= `+${added} -${removed} lines`);
  return `+${added} -${removed} lines`;
}

/** The summaries of small edits, made once: one is written with every content update. */
const SMALL_SUMMARIES = 16;
const smallSummaries: string[] = [];

/**
 * Three-way line merge (diff3) of the caller's edit (`ours`, based on `base`) onto what is
 * stored now (`theirs`). Changes to different lines combine; the same change made on both
 * sides is taken once; changes to the same or adjacent lines are conflicts, returned as
 * regions (as `git merge` does). Splitting on `\n` and joining back keeps the text byte-exact.
 * Cost grows with (changed lines)²: about 50 ms for 5000-line documents, seconds at 50 000.
 *
 * @example
 * threeWayMerge({ base: 'a\nb\nc', ours: 'A\nb\nc', theirs: 'a\nb\nC' }) // { ok: true, content: 'A\nb\nC' }
 */
export function threeWayMerge(input: { base: string; ours: string; theirs: string }): MergeOutcome {
  const regions = diff3Merge(input.ours.split('\n'), input.base.split('\n'), input.theirs.split('\n'), {
    excludeFalseConflicts: true,
  });
  const merged: string[] = [];
  const conflicts: MergeConflictRegion[] = [];
  for (const region of regions) {
    if (region.ok) merged.push(...region.ok);
    else if (region.conflict) {
      conflicts.push({ base: region.conflict.o, ours: region.conflict.a, theirs: region.conflict.b });
    }
  }
  return conflicts.length > 0 ? { ok: false, conflicts } : { ok: true, content: merged.join('\n') };
}
