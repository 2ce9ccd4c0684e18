import { diff3Merge, diffIndices } from 'node-diff3';
import type { MergeConflictRegion } from '../errors.js';

/** Lines added and removed between two texts. */
export interface LineDiffStats {
  added: number;
  removed: number;
}

/** The result of a three-way merge: the merged text, or the regions where both sides changed the same lines. */
export type MergeOutcome = { ok: true; content: string } | { ok: false; conflicts: MergeConflictRegion[] };

/** Lines of a text for counting: '' has none, and a trailing newline does not open an extra line. */
function countableLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * How many lines `after` adds to and removes from `before` (a changed line counts as one of
 * each), like `git diff --stat`. Common leading and trailing lines are skipped before the LCS
 * so the usual edit (an append, a changed paragraph) costs next to nothing.
 *
 * @example
 * lineDiffStats('a\nb\n', 'a\nB\nc\n') // { added: 2, removed: 1 }
 */
export function lineDiffStats(before: string, after: string): LineDiffStats {
  const a = countableLines(before);
  const b = countableLines(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  if (midA.length === 0 || midB.length === 0) return { added: midB.length, removed: midA.length };
  if (midA.length * midB.length > EXACT_DIFF_BUDGET) return multisetStats(midA, midB);
  let added = 0;
  let removed = 0;
  for (const hunk of diffIndices(midA, midB)) {
    removed += hunk.buffer1[1];
    added += hunk.buffer2[1];
  }
  return { added, removed };
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
  return `+${stats.added} -${stats.removed} lines`;
}

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
