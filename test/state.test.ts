import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore } from '../src/backends/memory/store.js';
import { ClosedError, SnapshotError, ValidationError } from '../src/errors.js';
import { KnownDocument, RecentDocuments, VersionedCache } from '../src/state/cache.js';
import { copyJson, freezeJson, ImmutableDate, isFrozenJson, newChange, sameJson, sealChange, sealedNow } from '../src/state/copy.js';
import { StateManager } from '../src/state/manager.js';
import { lineDiffStats, summarizeStats, threeWayMerge } from '../src/state/merge.js';
import { canonicalJson, makeSnapshot, snapshotChecksum, verifySnapshot } from '../src/state/snapshot.js';
import { OwnCommits } from '../src/state/own-commits.js';
import { ChangeFanout } from '../src/state/store-kit.js';
import type { StateStore } from '../src/state/store.js';
import type { ChangeEvent } from '../src/state/types.js';
import * as wf from '../src/state/workflow-rules.js';
import { waitFor } from './helpers/services.js';

const managers: StateManager[] = [];
function manager(options?: ConstructorParameters<typeof StateManager>[0]): StateManager {
  const m = new StateManager(options);
  managers.push(m);
  return m;
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
  vi.restoreAllMocks();
});

async function validationError(promise: Promise<unknown> | (() => unknown), field?: string): Promise<ValidationError> {
  let err: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ValidationError);
  const v = err as ValidationError;
  expect(v.code).toBe('validation');
  if (field !== undefined) expect(v.field).toBe(field);
  return v;
}

describe('StateManager input validation (every bad input gets ValidationError, nothing is written)', () => {
  it('constructor options', async () => {
    await validationError(() => new StateManager({ store: 42 as never }), 'store');
    await validationError(() => new StateManager({ store: {} as never }), 'store');
    await validationError(() => new StateManager({ store: 'ftp://nowhere' }));
    await validationError(() => new StateManager({ historyLimit: 0 }), 'historyLimit');
    await validationError(() => new StateManager({ historyLimit: 1.5 }), 'historyLimit');
    await validationError(() => new StateManager({ historyLimit: '10' as never }), 'historyLimit');
    await validationError(() => new StateManager({ historyWindow: 0 }), 'historyWindow');
    await validationError(() => new StateManager({ cache: { ttlMs: 0 } }), 'cache.ttlMs');
    await validationError(() => new StateManager({ cache: 'yes' as never }));
    await validationError(() => new StateManager({ locks: { ttlMs: -1 } }), 'locks.ttlMs');
    await validationError(() => new StateManager('memory://' as never));
    const err = await validationError(() => new StateManager({ historyLimit: -3 }));
    expect(err.message).toBe('historyLimit must be an integer 1..1000000, got `-3` (number)');
  });

  it('createDocumentState', async () => {
    const state = manager();
    const ok = { documentId: 'doc', topic: 't', requirements: [], context: {} };
    await validationError(state.createDocumentState(undefined as never));
    await validationError(state.createDocumentState({ ...ok, documentId: '' }), 'documentId');
    await validationError(state.createDocumentState({ ...ok, documentId: 7 as never }), 'documentId');
    await validationError(state.createDocumentState({ ...ok, documentId: 'x'.repeat(513) }), 'documentId');
    await validationError(state.createDocumentState({ ...ok, topic: undefined as never }), 'topic');
    await validationError(state.createDocumentState({ ...ok, topic: '  ' }), 'topic');
    await validationError(state.createDocumentState({ ...ok, requirements: 'short' as never }), 'requirements');
    await validationError(state.createDocumentState({ ...ok, requirements: [1] as never }), 'requirements');
    await validationError(state.createDocumentState({ ...ok, context: [] as never }), 'context');
    await validationError(state.createDocumentState({ ...ok, context: { when: new Date() } }), 'context');
    await validationError(state.createDocumentState({ ...ok, content: 5 as never }), 'content');
    await validationError(state.createDocumentState({ ...ok, metadata: { f: () => 1 } }), 'metadata');
    await validationError(state.createDocumentState({ ...ok, metadata: { n: Number.NaN } }), 'metadata');
    await validationError(state.createDocumentState({ ...ok, metadata: { u: undefined } }), 'metadata');
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    await validationError(state.createDocumentState({ ...ok, metadata: circular }), 'metadata');
    await validationError(state.createDocumentState({ ...ok, actor: '' }), 'actor');
    expect(await state.getDocumentState('doc')).toBeNull();
    expect(state.metrics().totalStateChanges).toBe(0);
  });

  it('requirements may be a list of strings or a JSON object', async () => {
    const state = manager();
    const a = await state.createDocumentState({ documentId: 'a', topic: 't', requirements: ['x'], context: {} });
    const b = await state.createDocumentState({ documentId: 'b', topic: 't', requirements: { words: 500 }, context: {} });
    const c = await state.createDocumentState({ documentId: 'c', topic: 't' });
    expect(a.metadata['requirements']).toEqual(['x']);
    expect(b.metadata['requirements']).toEqual({ words: 500 });
    expect(c.metadata).toEqual({ topic: 't', requirements: {}, context: {} });
  });

  it('updateDocumentContent and updateDocumentMetadata', async () => {
    const state = manager();
    await state.createDocumentState({ documentId: 'doc', topic: 't', content: 'c' });
    const ok = { documentId: 'doc', content: 'new', actor: 'a' };
    await validationError(state.updateDocumentContent(null as never));
    await validationError(state.updateDocumentContent({ ...ok, content: undefined as never }), 'content');
    await validationError(state.updateDocumentContent({ ...ok, content: 3 as never }), 'content');
    await validationError(state.updateDocumentContent({ ...ok, actor: undefined as never }), 'actor');
    await validationError(state.updateDocumentContent({ ...ok, actor: '' }), 'actor');
    for (const expectedVersion of [0, -1, 1.5, '1', Number.NaN]) {
      const err = await validationError(
        state.updateDocumentContent({ ...ok, expectedVersion: expectedVersion as never }),
        'expectedVersion',
      );
      expect(err.message).toMatch(/^expectedVersion must be an integer 1\.\./);
    }
    await validationError(state.updateDocumentContent({ ...ok, merge: 'yes' as never }), 'merge');
    const merge = await validationError(state.updateDocumentContent({ ...ok, merge: true }), 'expectedVersion');
    expect(merge.message).toContain('merge: true needs expectedVersion');
    await validationError(state.updateDocumentContent({ ...ok, summary: '' }), 'summary');
    await validationError(state.updateDocumentContent({ ...ok, documentId: '' }), 'documentId');
    const okMeta = { documentId: 'doc', metadata: { a: 1 }, actor: 'a' };
    await validationError(state.updateDocumentMetadata({ ...okMeta, metadata: null as never }), 'metadata');
    await validationError(state.updateDocumentMetadata({ ...okMeta, metadata: [] as never }), 'metadata');
    await validationError(state.updateDocumentMetadata({ ...okMeta, metadata: new Map() as never }), 'metadata');
    await validationError(state.updateDocumentMetadata({ ...okMeta, metadata: { big: 10n } as never }), 'metadata');
    await validationError(state.updateDocumentMetadata({ ...okMeta, mode: 'upsert' as never }), 'mode');
    await validationError(state.updateDocumentMetadata({ ...okMeta, actor: '' }), 'actor');
    await validationError(state.updateDocumentMetadata({ ...okMeta, expectedVersion: 0 }), 'expectedVersion');
    const doc = await state.getDocumentState('doc');
    expect(doc?.version).toBe(1);
  });

  it('reads, history, versions, snapshots', async () => {
    const state = manager();
    await state.createDocumentState({ documentId: 'doc', topic: 't' });
    await validationError(state.getDocumentState(''), 'documentId');
    await validationError(state.getStateHistory('doc', { limit: 0 }), 'limit');
    await validationError(state.getStateHistory('doc', 5 as never));
    await validationError(state.getDocumentAtVersion('doc', 0), 'version');
    await validationError(state.getDocumentAtVersion('doc', 'latest' as never), 'version');
    await validationError(state.snapshotState('doc', { version: -1 }), 'version');
    const snap = await state.snapshotState('doc');
    await validationError(state.restoreSnapshot(snap, { actor: '' }), 'actor');
    await validationError(state.restoreSnapshot(snap, { expectedVersion: 0 }), 'expectedVersion');
  });

  it('workflows', async () => {
    const state = manager();
    await validationError(state.createWorkflowState({ workflowId: '', stages: ['a'] }), 'workflowId');
    await validationError(state.createWorkflowState({ workflowId: 'w', stages: [] }), 'stages');
    await validationError(state.createWorkflowState({ workflowId: 'w', stages: ['a'], data: [] as never }), 'data');
    await state.createWorkflowState({ workflowId: 'w', stages: ['a'] });
    await validationError(state.updateStage({ workflowId: 'w', stage: '' }), 'stage');
    await validationError(state.updateStage({ workflowId: 'w', stage: 5 as never }), 'stage');
    await validationError(state.completeStage({ workflowId: 'w', stage: 'a', qualityScore: 2 }), 'qualityScore');
    await validationError(state.updateWorkflowData({ workflowId: 'w', data: 'x' as never }), 'data');
    await validationError(state.updateWorkflowData({ workflowId: 'w', data: {}, mode: 'x' as never }), 'mode');
    await validationError(state.getWorkflowState(''), 'workflowId');
  });

  it('watch, withLock and locks', async () => {
    const state = manager();
    await validationError(() => state.watch('', () => undefined), 'watch target');
    await validationError(() => state.watch(5 as never, () => undefined), 'target');
    await validationError(() => state.watch('doc', 'nope' as never), 'handler');
    await validationError(() => state.watch({ workflowId: '' }, () => undefined), 'workflowId');
    await validationError(state.withLock('doc', 'nope' as never), 'fn');
    await validationError(
      state.withLock('', async () => undefined),
      'documentId',
    );
    await validationError(state.locks.acquire('doc', { ttlMs: 0 }), 'ttlMs');
    await validationError(state.locks.acquire('doc', { waitMs: -5 }), 'waitMs');
    await validationError(state.locks.acquire(''), 'lock key');
    await validationError(state.locks.acquire('doc', { signal: 'stop' as never }), 'signal');
    expect(state.locks.isHeld('doc')).toBe(false);
  });
});

describe('StateManager lifecycle', () => {
  it('new StateManager() just works on a private memory store', async () => {
    const a = manager();
    const b = manager({ store: 'memory://' });
    await a.createDocumentState({ documentId: 'doc', topic: 't' });
    expect(await b.getDocumentState('doc')).toBeNull();
  });

  it('close() is idempotent and later calls fail with ClosedError', async () => {
    const state = new StateManager();
    await state.createDocumentState({ documentId: 'doc', topic: 't' });
    await state.close();
    await state.close();
    await expect(state.getDocumentState('doc')).rejects.toThrow(ClosedError);
    await expect(state.createWorkflowState({ workflowId: 'w', stages: ['a'] })).rejects.toThrow(ClosedError);
    expect(() => state.watch('doc', () => undefined)).toThrow(ClosedError);
  });

  it('close() right after construction does not leak the store', async () => {
    const state = new StateManager();
    await state.close();
    await expect(state.ready()).rejects.toThrow(ClosedError);
  });

  it('a store passed as an instance is left open on close()', async () => {
    const store = new MemoryStore();
    const a = new StateManager({ store });
    await a.createDocumentState({ documentId: 'doc', topic: 't' });
    await a.close();
    const b = manager({ store });
    expect((await b.getDocumentState('doc'))?.version).toBe(1);
  });

  it('close() releases the locks the manager holds', async () => {
    const store = new MemoryStore();
    const a = new StateManager({ store });
    const b = manager({ store });
    await a.locks.acquire('doc');
    expect(await b.locks.tryAcquire('doc')).toBeNull();
    await a.close();
    expect(await b.locks.tryAcquire('doc')).not.toBeNull();
  });

  it('a throwing watch handler is reported as a process warning', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const state = manager();
    state.watch('doc', () => {
      throw new Error('bad handler');
    });
    await state.createDocumentState({ documentId: 'doc', topic: 't' });
    await waitFor(() => warn.mock.calls.length > 0, 'the warning');
    expect(String(warn.mock.calls[0]?.[0])).toContain('bad handler');
  });

  it('same-process lock waiters queue in order', async () => {
    const state = manager();
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        state.withLock('doc', async () => {
          order.push(i);
          await new Promise((r) => setImmediate(r));
        }),
      ),
    );
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('history compaction defaults', () => {
  it('historyLimit defaults to 1000: older entries are compacted while the version keeps counting', async () => {
    const state = manager();
    await state.createDocumentState({ documentId: 'd', topic: 't' });
    for (let i = 0; i < 1004; i++) await state.updateDocumentContent({ documentId: 'd', content: `c${i}`, actor: 'a' });
    const history = await state.getStateHistory('d', { limit: 2000 }); // a page larger than what is kept
    expect(history).toHaveLength(1000);
    expect(history[0]?.version).toBe(6);
    expect((await state.getDocumentState('d'))?.version).toBe(1005);
    expect((await state.getDocumentState('d'))?.history).toHaveLength(20);
    await expect(state.getDocumentAtVersion('d', 5)).rejects.toThrow('versions 6..1005 are kept');
  });
});

describe('version == number of writes (property)', () => {
  it('any sequence of writes gives one version each, with a contiguous kept history', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constant('content' as const), fc.constant('metadata' as const), fc.constant('restore' as const)), {
          maxLength: 25,
        }),
        fc.integer({ min: 1, max: 10 }),
        async (ops, historyLimit) => {
          const state = new StateManager({ historyLimit });
          try {
            await state.createDocumentState({ documentId: 'd', topic: 't', content: 'start' });
            const snapshot = await state.snapshotState('d');
            for (const [i, op] of ops.entries()) {
              if (op === 'content') await state.updateDocumentContent({ documentId: 'd', content: `c${i}`, actor: 'a' });
              else if (op === 'metadata') await state.updateDocumentMetadata({ documentId: 'd', metadata: { i }, actor: 'a' });
              else await state.restoreSnapshot(snapshot);
            }
            const doc = (await state.getDocumentState('d'))!;
            expect(doc.version).toBe(ops.length + 1);
            const history = await state.getStateHistory('d');
            expect(history).toHaveLength(Math.min(historyLimit, doc.version));
            for (const [i, h] of history.entries()) expect(h.version).toBe(doc.version - history.length + 1 + i);
            expect(state.metrics().totalStateChanges).toBe(ops.length + 1);
          } finally {
            await state.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('three-way merge', () => {
  it('combines edits to different lines and keeps identical edits once', () => {
    expect(threeWayMerge({ base: 'a\nb\nc', ours: 'A\nb\nc', theirs: 'a\nb\nC' })).toEqual({ ok: true, content: 'A\nb\nC' });
    expect(threeWayMerge({ base: 'a\nb\nc', ours: 'a\nB\nc', theirs: 'a\nB\nc' })).toEqual({ ok: true, content: 'a\nB\nc' });
    expect(threeWayMerge({ base: 'a\nb\nc\n', ours: 'a\nb\nc\nd\n', theirs: 'z\na\nb\nc\n' })).toEqual({
      ok: true,
      content: 'z\na\nb\nc\nd\n',
    });
  });

  it('reports overlapping edits as regions with base, ours and theirs', () => {
    const out = threeWayMerge({ base: 'a\nb\nc', ours: 'a\nX\nc', theirs: 'a\nY\nc' });
    expect(out).toEqual({ ok: false, conflicts: [{ base: ['b'], ours: ['X'], theirs: ['Y'] }] });
  });

  const line = fc.stringMatching(/^[a-z]{1,6}$/);

  it('property: edits separated by an unchanged line merge cleanly and contain both', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(line, { minLength: 3, maxLength: 30 }),
        fc.nat(),
        fc.array(line, { maxLength: 4 }),
        fc.array(line, { maxLength: 4 }),
        (baseLines, cut, oursInsert, theirsInsert) => {
          // ours rewrites a region before line k, theirs one after it; line k stays as it was.
          const k = 1 + (cut % (baseLines.length - 2));
          const ours = [...oursInsert.map((l) => `o-${l}`), ...baseLines.slice(k)];
          const theirs = [...baseLines.slice(0, k + 1), ...theirsInsert.map((l) => `t-${l}`)];
          const merged = threeWayMerge({ base: baseLines.join('\n'), ours: ours.join('\n'), theirs: theirs.join('\n') });
          expect(merged).toEqual({
            ok: true,
            content: [...oursInsert.map((l) => `o-${l}`), baseLines[k], ...theirsInsert.map((l) => `t-${l}`)].join('\n'),
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: merging with an unchanged side gives the other side', () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.array(line, { maxLength: 20 }), (base, edit) => {
        const b = base.join('\n');
        const e = edit.join('\n');
        expect(threeWayMerge({ base: b, ours: e, theirs: b })).toEqual({ ok: true, content: e });
        expect(threeWayMerge({ base: b, ours: b, theirs: e })).toEqual({ ok: true, content: e });
      }),
    );
  });
});

describe('line diff summary', () => {
  it('counts lines added and removed like git --stat', () => {
    expect(lineDiffStats('a\nb\n', 'a\nB\nc\n')).toEqual({ added: 2, removed: 1 });
    expect(lineDiffStats('', 'x\ny')).toEqual({ added: 2, removed: 0 });
    expect(lineDiffStats('x\ny\n', '')).toEqual({ added: 0, removed: 2 });
    expect(lineDiffStats('same', 'same')).toEqual({ added: 0, removed: 0 });
    expect(summarizeStats({ added: 12, removed: 3 })).toBe('+12 -3 lines');
  });

  it('stays fast and exact for edits on very large documents', () => {
    const before = Array.from({ length: 20_000 }, (_, i) => `line ${i}`);
    const after = before.map((l, i) => (i % 100 === 0 ? `changed ${i}` : l));
    after.splice(10_000, 0, 'inserted');
    expect(lineDiffStats(before.join('\n'), after.join('\n'))).toEqual({ added: 201, removed: 200 });
  });

  it('property: diffing a text with itself is empty; from empty adds every line', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ maxLength: 5 }).filter((s) => !s.includes('\n')),
          { minLength: 1, maxLength: 30 },
        ),
        (lines) => {
          const text = lines.join('\n');
          expect(lineDiffStats(text, text)).toEqual({ added: 0, removed: 0 });
          const counted = text === '' ? 0 : text.endsWith('\n') ? lines.length - 1 : lines.length;
          expect(lineDiffStats('', text)).toEqual({ added: counted, removed: 0 });
        },
      ),
    );
  });
});

describe('line diff summary against a reference LCS', () => {
  /** Textbook dynamic-programming LCS: the counts every shortcut in lineDiffStats must agree with. */
  function referenceStats(a: string[], b: string[]): { added: number; removed: number } {
    const dp = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++)
        dp[i]![j] = a[i - 1] === b[j - 1] ? dp[i - 1]![j - 1]! + 1 : Math.max(dp[i - 1]![j]!, dp[i]![j - 1]!);
    }
    const common = dp[a.length]![b.length]!;
    return { added: b.length - common, removed: a.length - common };
  }

  /** Lines as counted: '' has none, and a trailing newline does not open an extra line. */
  const linesOf = (text: string) => (text === '' ? [] : (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n'));

  it('property: added and removed are the lines outside a longest common subsequence', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '\n'), maxLength: 24 });
    fc.assert(
      fc.property(text, text, (before, after) => {
        expect(lineDiffStats(before, after)).toEqual(referenceStats(linesOf(before), linesOf(after)));
      }),
      { numRuns: 5000 },
    );
  });

  it('property: the same holds for edits of a longer document (shared prefix and suffix)', () => {
    const line = fc.constantFrom('alpha', 'beta', 'gamma', '', 'alphabet');
    const lines = fc.array(line, { maxLength: 8 });
    fc.assert(
      fc.property(lines, lines, lines, lines, fc.boolean(), fc.boolean(), (head, oldMid, newMid, tail, endsBefore, endsAfter) => {
        // The two sides may differ in their trailing newline too (which opens no line).
        const join = (ls: string[], newlineAtEnd: boolean) => ls.join('\n') + (newlineAtEnd && ls.length > 0 ? '\n' : '');
        const before = join([...head, ...oldMid, ...tail], endsBefore);
        const after = join([...head, ...newMid, ...tail], endsAfter);
        expect(lineDiffStats(before, after)).toEqual(referenceStats(linesOf(before), linesOf(after)));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('snapshots', () => {
  const record = {
    documentId: 'doc',
    version: 3,
    content: 'text',
    metadata: { b: 1, a: { y: [1, 2], x: null } },
    createdAt: new Date('2024-01-01T00:00:00Z'),
    updatedAt: new Date('2024-01-02T00:00:00Z'),
  };

  it('canonical JSON does not depend on key order', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(obj));
      }),
    );
  });

  it('verifies its own snapshots, also after a JSON round trip', () => {
    const snap = makeSnapshot(record, new Date('2024-02-01T00:00:00Z'));
    expect(snap.checksum).toBe(snapshotChecksum(snap));
    expect(verifySnapshot(JSON.parse(JSON.stringify(snap)))).toEqual(snap);
  });

  it('property: changing any field breaks the checksum', () => {
    const snap = makeSnapshot(record);
    fc.assert(
      fc.property(
        fc.constantFrom('documentId', 'version', 'content', 'createdAt', 'takenAt', 'metadata'),
        fc.string({ minLength: 1 }),
        (field, value) => {
          const tampered = { ...snap } as Record<string, unknown>;
          if (field === 'version') tampered[field] = snap.version + 1 + value.length;
          else if (field === 'metadata') tampered[field] = { ...snap.metadata, extra: value };
          else if (field === 'createdAt' || field === 'takenAt')
            tampered[field] = new Date(Date.parse(snap.createdAt) + 1000 + value.length).toISOString();
          else tampered[field] = `${String(tampered[field])}${value}`;
          expect(() => verifySnapshot(tampered)).toThrow(SnapshotError);
        },
      ),
    );
  });

  it('rejects bad shapes with a message naming the field', () => {
    const snap = makeSnapshot(record);
    expect(() => verifySnapshot({ ...snap, createdAt: 'yesterday' })).toThrow(/createdAt/);
    expect(() => verifySnapshot({ ...snap, checksum: 'abc' })).toThrow(/checksum/);
    expect(() => verifySnapshot({ ...snap, formatVersion: 2 })).toThrow(/formatVersion/);
    expect(() => verifySnapshot([])).toThrow(SnapshotError);
  });
});

describe('workflow rules (pure)', () => {
  const now = new Date();
  const base = wf.newWorkflow('w', ['a', 'b', 'c'], {}, now);

  it('property: iteration - 1 == number of re-entries of completed stages', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('enter', 'complete'), fc.constantFrom('a', 'b', 'c')), { maxLength: 40 }), (ops) => {
        let w = base;
        let reentries = 0;
        for (const [op, stage] of ops) {
          if (op === 'enter') {
            if (w.completedStages.includes(stage)) reentries++;
            w = wf.enterStage(w, stage, now);
          } else w = wf.completeStage(w, stage, 0.5, now);
          expect(new Set([...w.completedStages, ...w.pendingStages])).toEqual(new Set(['a', 'b', 'c']));
          expect(w.completedStages.filter((s) => w.pendingStages.includes(s))).toEqual([]);
        }
        expect(w.iteration).toBe(reentries + 1);
      }),
    );
  });

  it('property: entering a completed stage reopens it and every later stage; earlier completions stay', () => {
    const stages = ['a', 'b', 'c', 'd'];
    const start = wf.newWorkflow('w', stages, {}, now);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('enter', 'complete'), fc.constantFrom(...stages)), { maxLength: 60 }), (ops) => {
        let w = start;
        for (const [op, stage] of ops) {
          const before = w;
          if (op === 'complete') {
            w = wf.completeStage(w, stage, 0.5, now);
            continue;
          }
          w = wf.enterStage(w, stage, now);
          const at = stages.indexOf(stage);
          if (before.completedStages.includes(stage)) {
            expect(w.iteration).toBe(before.iteration + 1);
            expect(w.completedStages).toEqual(before.completedStages.filter((s) => stages.indexOf(s) < at));
          } else {
            expect(w.iteration).toBe(before.iteration);
            expect(w.completedStages).toEqual(before.completedStages);
          }
          expect(w.pendingStages).toEqual(stages.filter((s) => !w.completedStages.includes(s)));
          expect(w.qualityScores).toEqual(before.qualityScores);
        }
      }),
    );
  });

  it('a revision loop from the last stage back to an earlier one counts one iteration, however many stages it reopens', () => {
    const stages = ['research', 'writing', 'editing', 'verification'];
    let w = wf.newWorkflow('w', stages, {}, now);
    const pass = (from: string[]) => {
      for (const stage of from) {
        w = wf.enterStage(w, stage, now);
        w = wf.completeStage(w, stage, 0.5, now);
      }
    };
    pass(stages);
    expect(w.iteration).toBe(1);
    for (let round = 1; round <= 3; round++) {
      w = wf.enterStage(w, 'writing', now);
      expect(w).toMatchObject({
        stage: 'writing',
        iteration: round + 1,
        completedStages: ['research'],
        pendingStages: ['writing', 'editing', 'verification'],
      });
      expect(w.qualityScores).toEqual({ research: 0.5, writing: 0.5, editing: 0.5, verification: 0.5 });
      pass(['writing', 'editing', 'verification']);
      expect(w.iteration).toBe(round + 1);
      expect(w.completedStages).toEqual(stages);
    }
  });

  it('re-entering the last completed stage reopens only that stage', () => {
    let w = wf.completeStage(wf.completeStage(base, 'a', 1, now), 'b', 0.2, now);
    w = wf.enterStage(w, 'b', now);
    expect(w).toMatchObject({ stage: 'b', iteration: 2, completedStages: ['a'], pendingStages: ['b', 'c'] });
  });

  it('does not mutate its input', () => {
    const entered = wf.enterStage(base, 'a', now);
    expect(base.stage).toBeNull();
    expect(entered.stage).toBe('a');
  });
});

describe('VersionedCache', () => {
  it('never goes back to an older version once a newer one is known', () => {
    const cache = new VersionedCache<string>({ ttlMs: 60_000 });
    cache.put('k', 2, 'v2');
    cache.put('k', 1, 'v1');
    expect(cache.get('k')).toBe('v2');
    cache.saw('k', 3);
    expect(cache.get('k')).toBeUndefined();
    cache.put('k', 2, 'v2 again');
    expect(cache.get('k')).toBeUndefined();
    cache.put('k', 3, 'v3');
    expect(cache.get('k')).toBe('v3');
  });

  it('expires entries after ttlMs', async () => {
    const cache = new VersionedCache<string>({ ttlMs: 20 });
    cache.put('k', 1, 'v1');
    expect(cache.get('k')).toBe('v1');
    await waitFor(() => cache.get('k') === undefined, 'the entry to expire');
  });
});

describe('ChangeFanout', () => {
  it('delivers each event once, in order, after the cursor', async () => {
    const fanout = new ChangeFanout();
    const seen: number[] = [];
    fanout.add((e) => seen.push(e.revision), 1);
    const ev = (revision: number): ChangeEvent => ({
      revision,
      kind: 'document',
      id: 'd',
      version: revision,
      action: 'update_content',
      timestamp: new Date(),
    });
    fanout.deliver([ev(1), ev(2), ev(3)]);
    fanout.deliver([ev(2), ev(3), ev(4)]);
    await waitFor(() => seen.length === 3, 'the events');
    expect(seen).toEqual([2, 3, 4]);
  });
});

describe('copies at the boundaries', () => {
  it('property: copyJson is a deep copy of JSON that shares no object with its source', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const copy = copyJson(value);
        expect(copy).toEqual(value);
        const objects = (v: unknown, into: Set<unknown>): Set<unknown> => {
          if (typeof v === 'object' && v !== null) {
            into.add(v);
            for (const child of Object.values(v)) objects(child, into);
          }
          return into;
        };
        const original = objects(value, new Set());
        for (const o of objects(copy, new Set())) expect(original.has(o)).toBe(false);
      }),
    );
  });

  it('property: sameJson is structural equality of JSON (key order aside), and a copy is the same', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        expect(sameJson(a, copyJson(a))).toBe(true);
        expect(sameJson(a, b)).toBe(canonicalJson(a) === canonicalJson(b));
      }),
    );
    expect(sameJson({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 })).toBe(true);
    expect(sameJson({ a: 1 }, { a: 1, b: undefined })).toBe(false);
    expect(sameJson([1, 2], { 0: 1, 1: 2 })).toBe(false);
  });

  it('copyJson keeps a __proto__ key as an own property and copies Dates', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": [1, {"b": 2}]}') as Record<string, unknown>;
    const copy = copyJson(parsed);
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
    expect(Object.keys(copy)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const when = new Date(5);
    expect(copyJson({ when })).toEqual({ when: new Date(5) });
    expect(copyJson({ when }).when).not.toBe(when);
  });

  it('a sealed history entry is frozen and its timestamp refuses every setter, yet is a Date', () => {
    const entry = sealChange({ version: 3, timestamp: new Date(1_000), actor: 'a', action: 'update_content', summary: '+1 -0 lines' });
    expect(Object.isFrozen(entry)).toBe(true);
    expect(entry.timestamp).toBeInstanceOf(Date);
    expect(entry.timestamp).toBeInstanceOf(ImmutableDate);
    expect(entry.timestamp).toEqual(new Date(1_000));
    expect(JSON.parse(JSON.stringify(entry))).toEqual({
      version: 3,
      timestamp: new Date(1_000).toISOString(),
      actor: 'a',
      action: 'update_content',
      summary: '+1 -0 lines',
    });
    expect(structuredClone(entry).timestamp).toEqual(new Date(1_000));
    const setters = Object.getOwnPropertyNames(Date.prototype).filter((name) => name.startsWith('set'));
    expect(setters.length).toBeGreaterThanOrEqual(15);
    for (const name of setters) {
      expect(() => (entry.timestamp as unknown as Record<string, (n: number) => void>)[name]!(0), name).toThrow(TypeError);
    }
    expect(entry.timestamp.getTime()).toBe(1_000);
    expect(sealChange(entry)).toBe(entry);
  });

  it("writes of one millisecond share one frozen timestamp; the caller's dates stay its own", async () => {
    const m = manager();
    await m.createDocumentState({ documentId: 'ms', topic: 't', content: 'a' });
    vi.spyOn(Date, 'now').mockReturnValue(1_700_000_000_000);
    const first = await m.updateDocumentContent({ documentId: 'ms', content: 'b', actor: 'x', expectedVersion: 1 });
    const second = await m.updateDocumentContent({ documentId: 'ms', content: 'c', actor: 'x', expectedVersion: 2 });
    const [a, b] = second.history.slice(-2);
    expect(a!.timestamp).toBe(b!.timestamp);
    expect(Object.isFrozen(a!.timestamp)).toBe(true);
    expect(a!.timestamp.getTime()).toBe(1_700_000_000_000);
    expect(() => a!.timestamp.setTime(0)).toThrow(TypeError);
    first.updatedAt.setTime(0);
    expect(second.updatedAt.getTime()).toBe(1_700_000_000_000);
    expect((await m.getDocumentState('ms'))?.updatedAt.getTime()).toBe(1_700_000_000_000);
  });
});

describe('frozen metadata (kept as is by the memory store)', () => {
  it('isFrozenJson accepts only JSON that no one can change', () => {
    expect(isFrozenJson(freezeJson({ a: [1, { b: 'x' }], c: null, d: true }))).toBe(true);
    expect(isFrozenJson(freezeJson([]))).toBe(true);
    expect(isFrozenJson({ a: 1 })).toBe(false);
    expect(isFrozenJson(Object.freeze({ a: { b: 1 } }))).toBe(false); // a nested object is not frozen
    expect(isFrozenJson(Object.freeze({ when: Object.freeze(new Date(0)) }))).toBe(false); // a frozen Date still changes
    expect(
      isFrozenJson(
        Object.freeze({
          get a() {
            return Math.random();
          },
        }),
      ),
    ).toBe(false);
    expect(isFrozenJson(Object.freeze({ [Symbol('s')]: 1 }))).toBe(false);
    expect(isFrozenJson(Object.freeze(Object.defineProperty({}, 'hidden', { value: 1 })))).toBe(false);
    expect(isFrozenJson(Object.freeze(Object.create({ inherited: 1 })))).toBe(false);
    expect(isFrozenJson(Object.freeze({ f: () => 1 }))).toBe(false);
  });

  it('a history entry has a summary key only when it has a summary', () => {
    expect(Object.keys(newChange(1, sealedNow(), 'a', 'create', undefined))).toEqual(['version', 'timestamp', 'actor', 'action']);
    expect(Object.keys(newChange(2, sealedNow(), 'a', 'update_content', '+1 -0 lines'))).toEqual([
      'version',
      'timestamp',
      'actor',
      'action',
      'summary',
    ]);
    expect(Object.keys(sealChange({ version: 1, timestamp: new Date(0), actor: 'a', action: 'create' }))).toEqual([
      'version',
      'timestamp',
      'actor',
      'action',
    ]);
  });

  it('property: freezeJson deep-freezes in place, and the value stays equal to a copy', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const copy = copyJson(value);
        expect(freezeJson(value)).toBe(value);
        expect(isFrozenJson(value)).toBe(true);
        expect(value).toEqual(copy);
      }),
    );
  });

  it("the store's versions keep their metadata whatever the committer does with its objects later, and reads are copies", async () => {
    const store = new MemoryStore();
    const frozen = freezeJson({ tags: ['a'], owner: { name: 'x' } });
    const at = () => sealedNow();
    const commit = (version: number, metadata: Record<string, unknown>) =>
      store.commitDocument({
        document: { documentId: 'm', version, content: `v${version}`, metadata, createdAt: at(), updatedAt: at() },
        change: newChange(version, at(), 'x', version === 1 ? 'create' : 'update_content', undefined),
        expectedVersion: version === 1 ? null : version - 1,
        historyLimit: 10,
      });
    await commit(1, frozen);
    await commit(2, frozen);
    const mutable: Record<string, unknown> = { tags: ['b'] };
    await commit(3, mutable);
    (mutable['tags'] as string[]).push('changed');
    mutable['extra'] = 1;
    expect((await store.getVersion('m', 2))?.metadata).toEqual({ tags: ['a'], owner: { name: 'x' } });
    const read = (await store.getDocument('m'))!;
    expect(read.metadata).toEqual({ tags: ['b'] });
    expect(Object.isFrozen(read.metadata)).toBe(false);
    const v1 = (await store.getVersion('m', 1))!;
    expect(v1.metadata).not.toBe(frozen);
    expect(Object.isFrozen(v1.metadata)).toBe(false);
  });

  it("the manager's metadata never leaks frozen: every document handed out has its own, mutable copy", async () => {
    const m = manager();
    const created = await m.createDocumentState({ documentId: 'fm', topic: 't', content: 'a', metadata: { tags: ['x'] } });
    const updated = await m.updateDocumentContent({ documentId: 'fm', content: 'b', actor: 'w', expectedVersion: 1 });
    const meta = await m.updateDocumentMetadata({ documentId: 'fm', metadata: { more: { n: 1 } }, actor: 'w', expectedVersion: 2 });
    const read = (await m.getDocumentState('fm'))!;
    for (const doc of [created, updated, meta, read]) {
      expect(Object.isFrozen(doc.metadata)).toBe(false);
      (doc.metadata['tags'] as string[]).push('mutated');
      doc.metadata['topic'] = 'changed';
    }
    const after = await m.updateDocumentContent({ documentId: 'fm', content: 'c', actor: 'w', expectedVersion: 3 });
    expect(after.metadata).toMatchObject({ topic: 't', tags: ['x'], more: { n: 1 } });
    expect((await m.getDocumentAtVersion('fm', 2)).metadata).toMatchObject({ topic: 't', tags: ['x'] });
  });
});

describe('RecentDocuments (the write-base memo)', () => {
  const doc = (key: string, version: number, content = 'x') =>
    new KnownDocument({ documentId: key, version, content, metadata: {}, createdAt: new Date(0), updatedAt: new Date(0) }, [], 4);

  it("a known document's record has its update time, whether or not it is the newest entry's timestamp", () => {
    const at = (ms: number) => Object.freeze(new ImmutableDate(ms));
    const record = (version: number, updatedAt: Date) => ({
      documentId: 'k',
      version,
      content: 'c',
      metadata: {},
      createdAt: at(0),
      updatedAt,
    });
    const t1 = at(1);
    const shared = new KnownDocument(record(1, t1), [newChange(1, t1, 'a', 'create', undefined)], 4);
    expect(shared.record().updatedAt).toBe(t1);
    const apart = new KnownDocument(record(1, new Date(5)), [newChange(1, t1, 'a', 'create', undefined)], 4);
    expect(apart.record().updatedAt).toEqual(new Date(5));
    const t2 = at(2);
    apart.advance(record(2, t2), newChange(2, t2, 'a', 'update_content', undefined));
    expect(apart.record().updatedAt).toBe(t2);
    apart.advance(record(3, new Date(7)), newChange(3, at(3), 'a', 'update_content', undefined));
    expect(apart.record().updatedAt).toEqual(new Date(7));
    const windowless = new KnownDocument(record(1, t1), [newChange(1, t1, 'a', 'create', undefined)], 0);
    expect(windowless.record().updatedAt).toBe(t1);
    windowless.advance(record(2, t2), newChange(2, t2, 'a', 'update_content', undefined));
    expect(windowless.record().updatedAt).toBe(t2);
    expect(windowless.history()).toEqual([]);
  });

  it('never goes back to an older version of a key', () => {
    const recent = new RecentDocuments({ maxEntries: 10, maxChars: 1000 });
    recent.set(doc('a', 3));
    recent.set(doc('a', 2));
    expect(recent.get('a')?.version).toBe(3);
    recent.set(doc('a', 4));
    expect(recent.get('a')?.version).toBe(4);
  });

  it('evicts the least recently set keys beyond its entry and size bounds', () => {
    const recent = new RecentDocuments({ maxEntries: 3, maxChars: 10 });
    for (const key of ['a', 'b', 'c']) recent.set(doc(key, 1));
    recent.set(doc('a', 2)); // a is now the most recent
    recent.set(doc('d', 1));
    expect(['a', 'b', 'c', 'd'].filter((k) => recent.get(k))).toEqual(['a', 'c', 'd']);
    recent.set(doc('e', 1, 'x'.repeat(9))); // 12 characters: c goes (4 entries), then a (11)
    expect(['a', 'c', 'd', 'e'].filter((k) => recent.get(k))).toEqual(['d', 'e']);
    recent.set(doc('f', 1, 'y'.repeat(50))); // larger than the bound alone: kept, the others go
    expect(['d', 'e', 'f'].filter((k) => recent.get(k))).toEqual(['f']);
    recent.delete('f');
    expect(recent.get('f')).toBeUndefined();
  });

  it('advances an entry in place: it becomes the most recent, its size counts, its window slides', () => {
    const recent = new RecentDocuments({ maxEntries: 3, maxChars: 10 });
    for (const key of ['a', 'b', 'c']) recent.set(doc(key, 1));
    const a = recent.get('a')!;
    const change = (version: number) => sealChange({ version, timestamp: new Date(version), actor: 'w', action: 'update_content' });
    for (let version = 2; version <= 7; version++) {
      recent.advance(a, { ...a.record(), version, content: 'x'.repeat(version === 7 ? 8 : 1) }, change(version));
    }
    expect(a.version).toBe(7);
    expect(a.history().map((c) => c.version)).toEqual([4, 5, 6, 7]); // the window holds 4
    expect(recent.get('a')).toBe(a);
    // a's 8 characters count: a fourth document pushes out b (the least recently used, not a),
    // and the next one c as well (8 + 1 + 1 + 1 > 10).
    recent.set(doc('d', 1));
    expect(['a', 'b', 'c', 'd'].filter((k) => recent.get(k))).toEqual(['a', 'c', 'd']);
    recent.set(doc('e', 1));
    expect(['a', 'c', 'd', 'e'].filter((k) => recent.get(k))).toEqual(['a', 'd', 'e']);
  });
});

describe('the write path asks the store only what it must', () => {
  /** A view of a MemoryStore (a new one, or `inner`) that counts the calls made through it per method. */
  function countingStore(inner: StateStore = new MemoryStore()): { store: StateStore; calls: Map<string, number> } {
    const calls = new Map<string, number>();
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    return { store, calls };
  }

  it('an update with the expectedVersion this manager last wrote or read is one commit, with no reads and no stats', async () => {
    const { store, calls } = countingStore();
    const state = manager({ store });
    let doc = await state.createDocumentState({ documentId: 'd', topic: 't', content: 'a\nb' });
    await waitFor(() => (calls.get('stats') ?? 0) >= 1, 'the initial stats read');
    calls.clear();
    for (let i = 0; i < 50; i++) {
      doc = await state.updateDocumentContent({ documentId: 'd', content: `a\nb ${i}`, actor: 'w', expectedVersion: doc.version });
    }
    expect(doc.version).toBe(51);
    expect(doc.history.map((h) => h.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 32));
    expect(doc.history.at(-1)).toMatchObject({ version: 51, actor: 'w', action: 'update_content', summary: '+1 -1 lines' });
    expect(state.metrics()).toMatchObject({ activeDocuments: 1, totalStateChanges: 51, averageDocumentVersion: 51 });
    // Let any feed event and refresh land before counting.
    await new Promise((resolve) => setImmediate(resolve));
    expect(Object.fromEntries(calls)).toEqual({ commitDocument: 50 });
  });

  it('store reads per update are the same with 10 000 live documents as with 1: none (no cliff at a memo bound)', async () => {
    const readsPerUpdate = async (documents: number): Promise<Record<string, number>> => {
      const { store, calls } = countingStore();
      const state = manager({ store });
      const versions: number[] = [];
      for (let i = 0; i < documents; i++)
        versions.push((await state.createDocumentState({ documentId: `d${i}`, topic: 't', content: 'a\nb' })).version);
      calls.clear();
      // Round-robin, each update a compare-and-swap on the version the previous one returned.
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < documents; i++) {
          const doc = await state.updateDocumentContent({
            documentId: `d${i}`,
            content: `a\nb ${round}`,
            actor: 'w',
            expectedVersion: versions[i],
          });
          expect(doc.history.map((h) => h.version)).toEqual([1, 2, 3].slice(0, round + 2));
          versions[i] = doc.version;
        }
      }
      await new Promise((resolve) => setImmediate(resolve));
      const reads: Record<string, number> = {};
      for (const [method, count] of calls) if (method !== 'commitDocument' && method !== 'stats') reads[method] = count / (2 * documents);
      expect(calls.get('commitDocument')).toBe(2 * documents);
      return reads;
    };
    const one = await readsPerUpdate(1);
    expect(one).toEqual({});
    expect(await readsPerUpdate(10_000)).toEqual(one);
  });

  it("another manager's write in between costs one read and a conflict, and is counted in the metrics", async () => {
    const shared = new MemoryStore();
    const { store, calls } = countingStore(shared);
    const a = manager({ store });
    const b = manager({ store: countingStore(shared).store });
    const doc = await a.createDocumentState({ documentId: 'd', topic: 't', content: 'a' });
    await b.updateDocumentContent({ documentId: 'd', content: 'b', actor: 'b', expectedVersion: 1 });
    await waitFor(() => a.metrics().totalStateChanges === 2, "a to see b's write in its metrics");
    calls.clear();
    await expect(
      a.updateDocumentContent({ documentId: 'd', content: 'c', actor: 'a', expectedVersion: doc.version }),
    ).rejects.toMatchObject({
      code: 'state_conflict',
      actualVersion: 2,
      current: { version: 2, content: 'b' },
    });
    expect(calls.get('commitDocument')).toBe(1);
    // The conflict taught a the current version: retrying on it is a single commit again.
    calls.clear();
    const retried = await a.updateDocumentContent({ documentId: 'd', content: 'c', actor: 'a', expectedVersion: 2 });
    expect(retried.version).toBe(3);
    expect(Object.fromEntries(calls)).toEqual({ commitDocument: 1 });
    await waitFor(() => b.metrics().totalStateChanges === 3 && a.metrics().totalStateChanges === 3, 'both to count 3 changes');
  });
});

describe('reads cost what they return, not the depth of the history', () => {
  /** A MemoryStore whose `getHistory` answers are tallied: entries handed back in all. */
  function tallyingStore(inner: StateStore = new MemoryStore()): { store: StateStore; entriesRead: () => number } {
    let entries = 0;
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (prop !== 'getHistory') return (value as (...a: unknown[]) => unknown).bind(target);
        return async (...args: unknown[]) => {
          const out = (await (value as (...a: unknown[]) => Promise<unknown[]>).apply(target, args)) as unknown[];
          entries += out.length;
          return out;
        };
      },
    });
    return { store, entriesRead: () => entries };
  }

  it('getDocumentAtVersion of the first of 300 versions reads only the history window ending at it', async () => {
    const { store, entriesRead } = tallyingStore();
    const state = manager({ store, historyWindow: 5 });
    let doc = await state.createDocumentState({ documentId: 'd', topic: 't', content: 'v1' });
    for (let v = 2; v <= 300; v++)
      doc = await state.updateDocumentContent({ documentId: 'd', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
    const before = entriesRead();
    const first = await state.getDocumentAtVersion('d', 1);
    expect(first).toMatchObject({ version: 1, content: 'v1' });
    expect(first.history.map((h) => h.version)).toEqual([1]);
    const mid = await state.getDocumentAtVersion('d', 150);
    expect(mid.history.map((h) => h.version)).toEqual([146, 147, 148, 149, 150]);
    expect(entriesRead() - before).toBe(6);
  });

  it('a write whose base this manager does not know reads the history window once, and no more of it', async () => {
    const shared = new MemoryStore();
    const writer = manager({ store: shared });
    let doc = await writer.createDocumentState({ documentId: 'd', topic: 't', content: 'v1' });
    for (let v = 2; v <= 100; v++)
      doc = await writer.updateDocumentContent({ documentId: 'd', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
    const { store, entriesRead } = tallyingStore(shared);
    const reader = manager({ store, historyWindow: 20 });
    const updated = await reader.updateDocumentContent({ documentId: 'd', content: 'v101', actor: 'r', expectedVersion: 100 });
    expect(updated.history.map((h) => h.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 82));
    expect(entriesRead()).toBe(20);
  });
});

describe('MemoryStore change feed', () => {
  it('keeps the last CHANGE_FEED_RETENTION events, dense and in order, past the point where its ring wraps', async () => {
    const { CHANGE_FEED_RETENTION } = await import('../src/state/store-kit.js');
    const store = new MemoryStore();
    const total = CHANGE_FEED_RETENTION + 25;
    const now = new Date();
    for (let v = 1; v <= total; v++) {
      const result = await store.commitDocument({
        document: { documentId: 'd', version: v, content: '', metadata: {}, createdAt: now, updatedAt: now },
        change: { version: v, timestamp: now, actor: 'a', action: v === 1 ? 'create' : 'update_content' },
        expectedVersion: v === 1 ? null : v - 1,
        historyLimit: 10,
      });
      expect(result.ok).toBe(true);
    }
    expect(await store.currentRevision()).toBe(total);
    const first = await store.changesSince(0, 3);
    expect(first.map((e) => e.revision)).toEqual([26, 27, 28]);
    expect(first[0]).toMatchObject({ kind: 'document', id: 'd', version: 26, action: 'update_content', actor: 'a' });
    const last = await store.changesSince(total - 2);
    expect(last.map((e) => [e.revision, e.version])).toEqual([
      [total - 1, total - 1],
      [total, total],
    ]);
    // Every kept event, across each page of the ring (the last one is a partial page) and the wrap.
    const all = await store.changesSince(0, total);
    expect(all).toHaveLength(CHANGE_FEED_RETENTION);
    all.forEach((e, i) => {
      expect(e.revision).toBe(26 + i);
      expect(e.version).toBe(26 + i);
    });
    await store.close();
  }, 120_000);
});

describe("OwnCommits (telling own feed events from other writers')", () => {
  const event = (version: number, revision: number, id = 'd'): ChangeEvent => ({
    revision,
    kind: 'document',
    id,
    version,
    action: 'update_content',
    timestamp: new Date(),
  });

  it("claims its event whether it comes before or after the commit's answer, once", () => {
    let others = 0;
    const own = new OwnCommits(() => others++);
    const before = own.begin('document', 'd', 2);
    expect(own.claim(event(2, 10))).toBe(true); // the event came first
    own.end(before, true);
    const after = own.begin('document', 'd', 3);
    own.end(after, true);
    expect(own.claim(event(3, 11))).toBe(true); // the event came after
    expect(own.claim(event(3, 11))).toBe(false); // forgotten once claimed
    expect(own.claim(event(4, 12))).toBe(false); // never ours
    expect(others).toBe(0);
  });

  it('claims its events across more ids than it keeps vacant, and forgets the claimed ones', () => {
    let others = 0;
    const own = new OwnCommits(() => others++);
    for (let i = 0; i < 5000; i++) {
      const ticket = own.begin('document', `d${i}`, 2);
      if (i % 2 === 0) expect(own.claim(event(2, i + 1, `d${i}`))).toBe(true);
      own.end(ticket, true);
      if (i % 2 === 1) expect(own.claim(event(2, i + 1, `d${i}`))).toBe(true);
    }
    expect(own.claim(event(2, 1, 'd0'))).toBe(false);
    expect(own.claim(event(2, 5000, 'd4999'))).toBe(false);
    expect(others).toBe(0);
  });

  it('an event seen while its commit was under way belongs to another writer when the commit lost', () => {
    let others = 0;
    const own = new OwnCommits(() => others++);
    const lost = own.begin('document', 'd', 2);
    expect(own.claim(event(2, 10))).toBe(true); // held until the commit ends
    own.end(lost, false);
    expect(others).toBe(1);
    const quiet = own.begin('workflow', 'd', 2); // same id, other kind: unrelated
    own.end(quiet, false);
    expect(others).toBe(1);
  });

  it('property: over any interleaving, every event is counted as own exactly when an own commit made it', () => {
    // Each version is made by us (we win) or by another writer (our racing commit, if any, loses).
    const step = fc.record({ ours: fc.boolean(), raced: fc.boolean(), eventFirst: fc.boolean() });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        let others = 0;
        let expectedOthers = 0;
        const own = new OwnCommits(() => others++);
        steps.forEach(({ ours, raced, eventFirst }, i) => {
          const version = i + 2;
          const ev = event(version, i + 1);
          if (!ours && !raced) {
            if (!own.claim(ev)) others++;
            expectedOthers++;
            return;
          }
          const ticket = own.begin('document', 'd', version);
          let claimed = false;
          if (eventFirst) claimed = own.claim(ev);
          own.end(ticket, ours);
          if (!eventFirst) claimed = own.claim(ev);
          if (!ours) {
            expectedOthers++;
            if (!eventFirst && !claimed) others++;
          } else expect(claimed).toBe(true);
        });
        expect(others).toBe(expectedOthers);
      }),
    );
  });
});
