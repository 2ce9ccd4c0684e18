/**
 * The StateStore conformance suite: every sentence of docs/CONTRACT.md's StateManager section,
 * checked through StateManager over the store under test, plus raw checks of the port.
 *
 * A backend runs it from its own test file:
 *
 *   runStoreConformance('sqlite', {
 *     async setup() {
 *       const file = freshFile();
 *       return { connect: async () => new SqliteStore({ filename: file }), teardown: async () => rm(file) };
 *     },
 *   });
 *
 * `setup()` makes an isolated space (fresh file, namespace, ...); `connect()` returns a store
 * onto that same space (a new connection where the backend has connections), so several
 * managers play several processes sharing one store.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  DocumentExistsError,
  DocumentNotFoundError,
  LockTimeoutError,
  SnapshotError,
  StateConflictError,
  ValidationError,
  VersionNotFoundError,
  WorkflowExistsError,
  WorkflowNotFoundError,
} from '../../src/errors.js';
import { LockLostError } from '../../src/state/locks.js';
import { StateManager, type StateManagerOptions } from '../../src/state/manager.js';
import { makeSnapshot } from '../../src/state/snapshot.js';
import type { DocumentRecord, StateStore } from '../../src/state/store.js';
import type { ChangeEvent, DocumentState, StateChange } from '../../src/state/types.js';
import { waitFor } from '../helpers/services.js';

/** An isolated space of a backend, and how to open stores onto it. */
export interface StoreSpace {
  connect(): Promise<StateStore>;
  teardown(): Promise<void>;
}

/** Makes isolated spaces of a backend. */
export interface StoreFactory {
  setup(): Promise<StoreSpace>;
}

async function rejects<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  throw new Error(`expected ${type.name}, but the call succeeded`);
}

export function runStoreConformance(name: string, factory: StoreFactory): void {
  describe(`StateStore conformance: ${name}`, () => {
    let space: StoreSpace;
    let managers: StateManager[] = [];
    let stores: StateStore[] = [];

    /** A store onto the test's space (a new connection where the backend has them). */
    async function connect(): Promise<StateStore> {
      const store = await space.connect();
      stores.push(store);
      await store.connect();
      return store;
    }

    /** A manager onto the test's space: several of them play several processes. */
    async function manager(options: Omit<StateManagerOptions, 'store'> = {}, store?: StateStore): Promise<StateManager> {
      const m = new StateManager({ ...options, store: store ?? (await connect()) });
      managers.push(m);
      await m.ready();
      return m;
    }

    function seed(m: StateManager, documentId = 'doc', content = 'a\nb\nc\nd\ne'): Promise<DocumentState> {
      return m.createDocumentState({
        documentId,
        topic: 'Quarterly report',
        requirements: ['short'],
        context: { audience: 'board' },
        content,
      });
    }

    beforeEach(async () => {
      space = await factory.setup();
    });

    afterEach(async () => {
      for (const m of managers) await m.close();
      for (const s of stores) await s.close();
      managers = [];
      stores = [];
      await space.teardown();
    });

    describe('documents', () => {
      it('a new document has version 1, its content, topic/requirements/context in metadata and one create entry', async () => {
        const state = await manager();
        const doc = await seed(state, 'doc', 'hello\nworld\n');
        expect(doc.version).toBe(1);
        expect(doc.content).toBe('hello\nworld\n');
        expect(doc.metadata).toMatchObject({ topic: 'Quarterly report', requirements: ['short'], context: { audience: 'board' } });
        expect(doc.createdAt).toBeInstanceOf(Date);
        expect(doc.updatedAt).toBeInstanceOf(Date);
        expect(doc.history).toHaveLength(1);
        expect(doc.history[0]).toMatchObject({ version: 1, actor: 'system', action: 'create', summary: '+2 -0 lines' });
        expect(doc.history[0]?.timestamp).toBeInstanceOf(Date);
        const read = await state.getDocumentState('doc');
        expect(read).toEqual(doc);
      });

      it('content defaults to the empty string', async () => {
        const state = await manager();
        const doc = await state.createDocumentState({ documentId: 'empty', topic: 't', requirements: [], context: {} });
        expect(doc.content).toBe('');
      });

      it('a duplicate create raises DocumentExistsError and writes nothing', async () => {
        const state = await manager();
        await seed(state);
        const err = await rejects(seed(state, 'doc', 'other'), DocumentExistsError);
        expect(err.documentId).toBe('doc');
        expect((await state.getDocumentState('doc'))?.content).toBe('a\nb\nc\nd\ne');
        expect(await state.getStateHistory('doc')).toHaveLength(1);
      });

      it('unknown documents: null on read, DocumentNotFoundError on every other call', async () => {
        const state = await manager();
        expect(await state.getDocumentState('nope')).toBeNull();
        await rejects(state.updateDocumentContent({ documentId: 'nope', content: 'x', actor: 'a' }), DocumentNotFoundError);
        await rejects(state.updateDocumentMetadata({ documentId: 'nope', metadata: {}, actor: 'a' }), DocumentNotFoundError);
        await rejects(state.getStateHistory('nope'), DocumentNotFoundError);
        await rejects(state.getDocumentAtVersion('nope', 1), DocumentNotFoundError);
        await rejects(state.snapshotState('nope'), DocumentNotFoundError);
      });

      it('every change adds exactly one version and one history entry with actor, action, timestamp and summary', async () => {
        const state = await manager();
        await seed(state, 'doc', 'a\nb\n');
        const v2 = await state.updateDocumentContent({ documentId: 'doc', content: 'a\nB\nc\n', actor: 'writer' });
        const v3 = await state.updateDocumentMetadata({ documentId: 'doc', metadata: { status: 'draft' }, actor: 'editor' });
        expect(v2.version).toBe(2);
        expect(v3.version).toBe(3);
        expect(v3.content).toBe('a\nB\nc\n');
        const history = await state.getStateHistory('doc');
        expect(history.map((h) => [h.version, h.actor, h.action])).toEqual([
          [1, 'system', 'create'],
          [2, 'writer', 'update_content'],
          [3, 'editor', 'update_metadata'],
        ]);
        expect(history[1]?.summary).toBe('+2 -1 lines');
        expect(history[2]?.summary).toContain('status');
        for (const h of history) expect(h.timestamp).toBeInstanceOf(Date);
        expect(v3.history.map((h) => h.version)).toEqual([1, 2, 3]);
      });

      it('a caller summary is kept with the line counts', async () => {
        const state = await manager();
        await seed(state, 'doc', 'a');
        await state.updateDocumentContent({ documentId: 'doc', content: 'a\nb', actor: 'w', summary: 'add b' });
        expect((await state.getStateHistory('doc'))[1]?.summary).toBe('add b: +1 -0 lines');
      });

      it('metadata is shallow-merged by default and replaced with mode: replace', async () => {
        const state = await manager();
        await seed(state);
        const merged = await state.updateDocumentMetadata({ documentId: 'doc', metadata: { status: 'draft', n: 1 }, actor: 'a' });
        expect(merged.metadata).toMatchObject({ topic: 'Quarterly report', status: 'draft', n: 1 });
        const replaced = await state.updateDocumentMetadata({ documentId: 'doc', metadata: { only: true }, actor: 'a', mode: 'replace' });
        expect(replaced.metadata).toEqual({ only: true });
      });

      it('a stale expectedVersion raises StateConflictError with expected, actual and the current document; nothing is written', async () => {
        const state = await manager();
        await seed(state);
        await state.updateDocumentContent({ documentId: 'doc', content: 'v2', actor: 'a', expectedVersion: 1 });
        const err = await rejects(
          state.updateDocumentContent({ documentId: 'doc', content: 'late', actor: 'b', expectedVersion: 1 }),
          StateConflictError,
        );
        expect(err.code).toBe('state_conflict');
        expect(err.documentId).toBe('doc');
        expect(err.expectedVersion).toBe(1);
        expect(err.actualVersion).toBe(2);
        expect((err.current as DocumentState).content).toBe('v2');
        expect((err.current as DocumentState).version).toBe(2);
        expect(err.message).toContain('version 2');
        await rejects(
          state.updateDocumentMetadata({ documentId: 'doc', metadata: { x: 1 }, actor: 'b', expectedVersion: 1 }),
          StateConflictError,
        );
        await rejects(
          state.updateDocumentContent({ documentId: 'doc', content: 'future', actor: 'b', expectedVersion: 9 }),
          StateConflictError,
        );
        const doc = await state.getDocumentState('doc');
        expect(doc?.version).toBe(2);
        expect(doc?.content).toBe('v2');
        expect(await state.getStateHistory('doc')).toHaveLength(2);
      });

      it('a conflict is detected against another manager even when this one caches', async () => {
        const a = await manager({ cache: { ttlMs: 60_000 } });
        const b = await manager();
        await seed(a);
        await a.getDocumentState('doc');
        await b.updateDocumentContent({ documentId: 'doc', content: 'by b', actor: 'b', expectedVersion: 1 });
        const err = await rejects(
          a.updateDocumentContent({ documentId: 'doc', content: 'by a', actor: 'a', expectedVersion: 1 }),
          StateConflictError,
        );
        expect(err.actualVersion).toBe(2);
        expect((await b.getDocumentState('doc'))?.content).toBe('by b');
      });

      it('merge: true three-way merges non-overlapping edits onto the current version (action merge)', async () => {
        const state = await manager();
        await seed(state, 'doc', 'a\nb\nc\nd\ne');
        await state.updateDocumentContent({ documentId: 'doc', content: 'A\nb\nc\nd\ne', actor: 'first', expectedVersion: 1 });
        const merged = await state.updateDocumentContent({
          documentId: 'doc',
          content: 'a\nb\nc\nd\nE',
          actor: 'second',
          expectedVersion: 1,
          merge: true,
        });
        expect(merged.version).toBe(3);
        expect(merged.content).toBe('A\nb\nc\nd\nE');
        const last = (await state.getStateHistory('doc')).at(-1);
        expect(last).toMatchObject({ version: 3, actor: 'second', action: 'merge' });
        expect(last?.summary).toContain('+1 -1 lines');
      });

      it('merge: true at the current version is a plain content update', async () => {
        const state = await manager();
        await seed(state);
        const doc = await state.updateDocumentContent({ documentId: 'doc', content: 'x', actor: 'a', expectedVersion: 1, merge: true });
        expect(doc.history.at(-1)?.action).toBe('update_content');
      });

      it('overlapping edits with merge: true raise StateConflictError with the conflicting regions; nothing is written', async () => {
        const state = await manager();
        await seed(state, 'doc', 'a\nb\nc\nd\ne');
        await state.updateDocumentContent({ documentId: 'doc', content: 'a\nb\nTHEIRS\nd\ne', actor: 'first' });
        const err = await rejects(
          state.updateDocumentContent({ documentId: 'doc', content: 'a\nb\nOURS\nd\ne', actor: 'second', expectedVersion: 1, merge: true }),
          StateConflictError,
        );
        expect(err.expectedVersion).toBe(1);
        expect(err.actualVersion).toBe(2);
        expect(err.conflicts).toEqual([{ base: ['c'], ours: ['OURS'], theirs: ['THEIRS'] }]);
        expect((err.current as DocumentState).content).toBe('a\nb\nTHEIRS\nd\ne');
        expect((await state.getDocumentState('doc'))?.version).toBe(2);
      });

      it('merging from a compacted base raises StateConflictError saying the base is gone', async () => {
        const state = await manager({ historyLimit: 2 });
        await seed(state, 'doc', 'a\nb\nc');
        for (let i = 0; i < 3; i++) await state.updateDocumentContent({ documentId: 'doc', content: `a\nb\nc${i}`, actor: 'w' });
        const err = await rejects(
          state.updateDocumentContent({ documentId: 'doc', content: 'A\nb\nc', actor: 'late', expectedVersion: 1, merge: true }),
          StateConflictError,
        );
        expect(err.message).toMatch(/compacted.*oldest kept is 3/);
      });

      it('getDocumentAtVersion returns every kept version as it was', async () => {
        const state = await manager();
        await seed(state, 'doc', 'v1');
        for (let v = 2; v <= 5; v++) await state.updateDocumentContent({ documentId: 'doc', content: `v${v}`, actor: `w${v}` });
        for (let v = 1; v <= 5; v++) {
          const at = await state.getDocumentAtVersion('doc', v);
          expect(at.version).toBe(v);
          expect(at.content).toBe(`v${v}`);
          expect(at.history.at(-1)?.version).toBe(v);
          expect(at.metadata).toMatchObject({ topic: 'Quarterly report' });
        }
        await rejects(state.getDocumentAtVersion('doc', 6), VersionNotFoundError);
      });

      it('every kept version keeps the metadata it had, through content and metadata updates in any order', async () => {
        const state = await manager();
        let doc = await seed(state, 'doc', 'v1');
        const expected: Array<Record<string, unknown>> = [doc.metadata];
        for (let v = 2; v <= 9; v++) {
          doc =
            v % 3 === 0
              ? await state.updateDocumentMetadata({
                  documentId: 'doc',
                  metadata: { step: v, nested: { list: [v] } },
                  actor: 'm',
                  expectedVersion: doc.version,
                })
              : await state.updateDocumentContent({ documentId: 'doc', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
          expected.push(doc.metadata);
        }
        for (let v = 1; v <= 9; v++) expect((await state.getDocumentAtVersion('doc', v)).metadata).toEqual(expected[v - 1]);
        expect(expected[2]).toMatchObject({ step: 3, nested: { list: [3] } });
        expect(expected[4]).toEqual(expected[3]);
        expect(expected[5]).toMatchObject({ step: 6, nested: { list: [6] } });
      });

      it('historyLimit compacts the oldest entries while version keeps counting; a compacted version is a clear error', async () => {
        const state = await manager({ historyLimit: 5 });
        await seed(state, 'doc', 'v1');
        for (let v = 2; v <= 12; v++) await state.updateDocumentContent({ documentId: 'doc', content: `v${v}`, actor: 'w' });
        const doc = await state.getDocumentState('doc');
        expect(doc?.version).toBe(12);
        const history = await state.getStateHistory('doc');
        expect(history.map((h) => h.version)).toEqual([8, 9, 10, 11, 12]);
        expect((await state.getDocumentAtVersion('doc', 8)).content).toBe('v8');
        const err = await rejects(state.getDocumentAtVersion('doc', 3), VersionNotFoundError);
        expect(err.code).toBe('version_not_found');
        expect(err.oldestKept).toBe(8);
        expect(err.latest).toBe(12);
        expect(err.message).toContain('8..12');
      });

      it('compacted versions never come back, past batch boundaries and under a manager with a larger limit', async () => {
        const small = await manager({ historyLimit: 3 });
        let doc = await seed(small, 'doc', 'v1');
        for (let v = 2; v <= 140; v++) {
          doc = await small.updateDocumentContent({ documentId: 'doc', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
          if (v === 63 || v === 66 || v === 130) {
            expect((await small.getStateHistory('doc')).map((h) => h.version)).toEqual([v - 2, v - 1, v]);
            await rejects(small.getDocumentAtVersion('doc', v - 3), VersionNotFoundError);
          }
        }
        const large = await manager({ historyLimit: 1000 });
        for (const state of [small, large]) {
          expect((await state.getStateHistory('doc')).map((h) => h.version)).toEqual([138, 139, 140]);
          expect((await state.getDocumentAtVersion('doc', 138)).content).toBe('v138');
          for (const gone of [1, 64, 100, 137]) await rejects(state.getDocumentAtVersion('doc', gone), VersionNotFoundError);
        }
        const next = await large.updateDocumentContent({ documentId: 'doc', content: 'v141', actor: 'w', expectedVersion: 140 });
        expect(next.history.map((h) => h.version)).toEqual([138, 139, 140, 141]);
        expect((await large.getStateHistory('doc')).map((h) => h.version)).toEqual([138, 139, 140, 141]);
        expect(large.metrics()).toMatchObject({ activeDocuments: 1, totalStateChanges: 141, averageDocumentVersion: 141 });
      });

      it('DocumentState.history is a bounded recent window; getStateHistory returns all kept, oldest first', async () => {
        const state = await manager({ historyWindow: 20 });
        await seed(state);
        for (let i = 0; i < 25; i++) await state.updateDocumentContent({ documentId: 'doc', content: `c${i}`, actor: 'w' });
        const doc = await state.getDocumentState('doc');
        expect(doc?.history.map((h) => h.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 7));
        const all = await state.getStateHistory('doc');
        expect(all.map((h) => h.version)).toEqual(Array.from({ length: 26 }, (_, i) => i + 1));
        expect((await state.getStateHistory('doc', { limit: 3 })).map((h) => h.version)).toEqual([24, 25, 26]);
      });

      it('getStateHistory pages: 100 newest by default, limit, before and after, and a walk back covers every kept entry once', async () => {
        const state = await manager({ historyLimit: 250 });
        let doc = await seed(state);
        for (let v = 2; v <= 260; v++)
          doc = await state.updateDocumentContent({ documentId: 'doc', content: `c${v}`, actor: 'w', expectedVersion: doc.version });
        const versions = (page: { version: number }[]) => page.map((h) => h.version);
        const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
        expect(versions(await state.getStateHistory('doc'))).toEqual(range(161, 260));
        expect(versions(await state.getStateHistory('doc', { limit: 3 }))).toEqual([258, 259, 260]);
        expect(versions(await state.getStateHistory('doc', { limit: 3, before: 100 }))).toEqual([97, 98, 99]);
        expect(versions(await state.getStateHistory('doc', { limit: 3, after: 100 }))).toEqual([101, 102, 103]);
        expect(versions(await state.getStateHistory('doc', { limit: 5, after: 100, before: 104 }))).toEqual([101, 102, 103]);
        expect(versions(await state.getStateHistory('doc', { after: 0, limit: 2 }))).toEqual([11, 12]); // compacted below 11
        expect(versions(await state.getStateHistory('doc', { before: 12 }))).toEqual([11]);
        expect(await state.getStateHistory('doc', { before: 11 })).toEqual([]);
        expect(await state.getStateHistory('doc', { after: 260 })).toEqual([]);
        const seen: number[] = [];
        let page = await state.getStateHistory('doc', { limit: 64 });
        for (;;) {
          seen.unshift(...versions(page));
          if (page.length < 64) break;
          page = await state.getStateHistory('doc', { limit: 64, before: page[0]!.version });
        }
        expect(seen).toEqual(range(11, 260));
        await rejects(state.getStateHistory('nope', { before: 5 }), DocumentNotFoundError);
        expect((await rejects(state.getStateHistory('doc', { before: 0 }), ValidationError)).field).toBe('before');
        expect((await rejects(state.getStateHistory('doc', { after: -1 }), ValidationError)).field).toBe('after');
        expect((await rejects(state.getStateHistory('doc', { limit: 1.5 }), ValidationError)).field).toBe('limit');
        expect((await rejects(state.getStateHistory('doc', { befor: 3 } as never), ValidationError)).message).toMatch(
          /unknown option `befor`/,
        );
      });

      it('getDocumentAtVersion reads any kept version with its own history window, far from the current one too', async () => {
        const state = await manager({ historyLimit: 500, historyWindow: 4 });
        let doc = await seed(state, 'doc', 'c1');
        for (let v = 2; v <= 300; v++)
          doc = await state.updateDocumentContent({ documentId: 'doc', content: `c${v}`, actor: `w${v}`, expectedVersion: doc.version });
        for (const v of [1, 2, 150, 299, 300]) {
          const at = await state.getDocumentAtVersion('doc', v);
          expect(at.version).toBe(v);
          expect(at.content).toBe(`c${v}`);
          expect(at.history.map((h) => h.version)).toEqual(Array.from({ length: Math.min(4, v) }, (_, i) => v - Math.min(4, v) + 1 + i));
        }
        const err = await rejects(state.getDocumentAtVersion('doc', 301), VersionNotFoundError);
        expect(err.latest).toBe(300);
        await rejects(state.getDocumentAtVersion('nope', 1), DocumentNotFoundError);
      });

      it('returned documents are copies: mutating them changes nothing stored', async () => {
        const state = await manager({ cache: { ttlMs: 60_000 } });
        const doc = await seed(state);
        doc.content = 'mutated';
        (doc.metadata as Record<string, unknown>)['topic'] = 'mutated';
        doc.history.length = 0;
        const again = await state.getDocumentState('doc');
        expect(again?.content).toBe('a\nb\nc\nd\ne');
        expect(again?.metadata['topic']).toBe('Quarterly report');
        expect(again?.history).toHaveLength(1);
      });

      for (const cache of [false, { ttlMs: 60_000 }] as const) {
        it(`nothing a write returns can change what is read or written next (cache ${cache ? 'on' : 'off'})`, async () => {
          const state = await manager({ cache });
          const doc = await seed(state);
          const written = await state.updateDocumentContent({
            documentId: 'doc',
            content: 'x\ny',
            actor: 'w',
            expectedVersion: doc.version,
          });
          (written.metadata as Record<string, unknown>)['topic'] = 'mutated';
          ((written.metadata['requirements'] as string[]) ?? []).push('mutated');
          written.updatedAt.setTime(0);
          written.createdAt.setTime(0);
          written.history.pop();
          // History entries are immutable records, shared rather than copied: changing one fails.
          const entry = (await state.getDocumentState('doc'))!.history[0]!;
          expect(() => Object.assign(entry, { actor: 'forger' })).toThrow(TypeError);
          expect(() => entry.timestamp.setTime(0)).toThrow(TypeError);
          expect(entry.timestamp).toBeInstanceOf(Date);
          // The next write builds on the stored version, not on the caller's object.
          const next = await state.updateDocumentContent({
            documentId: 'doc',
            content: 'x\ny\nz',
            actor: 'w',
            expectedVersion: written.version,
          });
          for (const read of [next, await state.getDocumentState('doc'), await state.getDocumentAtVersion('doc', written.version)]) {
            expect(read?.metadata['topic']).toBe('Quarterly report');
            expect(read?.metadata['requirements']).toEqual(doc.metadata['requirements']);
            expect(read?.createdAt.getTime()).toBe(doc.createdAt.getTime());
            expect(read?.updatedAt.getTime()).toBeGreaterThan(0);
            expect(read?.history[0]?.actor).toBe(doc.history[0]?.actor);
            expect(read?.history[0]?.timestamp.getTime()).toBe(doc.history[0]?.timestamp.getTime());
          }
          expect(next.history.map((h) => h.version)).toEqual([1, 2, 3]);
        });
      }
    });

    describe('snapshots', () => {
      it('a snapshot is plain JSON with a sha256 checksum and restores as a new version (action restore)', async () => {
        const state = await manager();
        await seed(state, 'doc', 'original');
        const snapshot = await state.snapshotState('doc');
        expect(snapshot).toMatchObject({ kind: 'concord.snapshot', formatVersion: 1, documentId: 'doc', version: 1, content: 'original' });
        expect(snapshot.checksum).toMatch(/^[0-9a-f]{64}$/);
        await state.updateDocumentContent({ documentId: 'doc', content: 'changed', actor: 'w' });
        await state.updateDocumentMetadata({ documentId: 'doc', metadata: { status: 'x' }, actor: 'w' });
        const restored = await state.restoreSnapshot(JSON.parse(JSON.stringify(snapshot)), { actor: 'ops' });
        expect(restored.version).toBe(4);
        expect(restored.content).toBe('original');
        expect(restored.metadata).toEqual(snapshot.metadata);
        const history = await state.getStateHistory('doc');
        expect(history.map((h) => h.action)).toEqual(['create', 'update_content', 'update_metadata', 'restore']);
        expect(history[3]).toMatchObject({ actor: 'ops', action: 'restore' });
        expect((await state.getDocumentAtVersion('doc', 2)).content).toBe('changed');
      });

      it('a snapshot of a kept older version can be taken', async () => {
        const state = await manager();
        await seed(state, 'doc', 'one');
        await state.updateDocumentContent({ documentId: 'doc', content: 'two', actor: 'w' });
        const snap = await state.snapshotState('doc', { version: 1 });
        expect(snap.version).toBe(1);
        expect(snap.content).toBe('one');
      });

      it('a tampered snapshot fails its checksum with SnapshotError; nothing is written', async () => {
        const state = await manager();
        await seed(state, 'doc', 'original');
        const snapshot = await state.snapshotState('doc');
        const err = await rejects(state.restoreSnapshot({ ...snapshot, content: 'evil' }), SnapshotError);
        expect(err.code).toBe('snapshot_invalid');
        expect(err.message).toContain('checksum');
        await rejects(state.restoreSnapshot({ ...snapshot, metadata: { ...snapshot.metadata, topic: 'x' } }), SnapshotError);
        expect((await state.getDocumentState('doc'))?.version).toBe(1);
      });

      it('a malformed snapshot fails shape validation with SnapshotError naming the field', async () => {
        const state = await manager();
        await seed(state);
        const snapshot = await state.snapshotState('doc');
        const { content: _content, ...missing } = snapshot;
        expect((await rejects(state.restoreSnapshot(missing as never), SnapshotError)).message).toContain('content');
        await rejects(state.restoreSnapshot({ ...snapshot, kind: 'other' } as never), SnapshotError);
        await rejects(state.restoreSnapshot({ ...snapshot, version: 0 } as never), SnapshotError);
        await rejects(state.restoreSnapshot({ ...snapshot, extra: 1 } as never), SnapshotError);
        await rejects(state.restoreSnapshot('not a snapshot' as never), SnapshotError);
        await rejects(state.restoreSnapshot(null as never), SnapshotError);
      });

      it('restoring a snapshot of a missing document creates it at version 1 with action restore', async () => {
        const state = await manager();
        const now = new Date();
        const record: DocumentRecord = {
          documentId: 'reborn',
          version: 7,
          content: 'from backup',
          metadata: { topic: 't' },
          createdAt: now,
          updatedAt: now,
        };
        const doc = await state.restoreSnapshot(makeSnapshot(record));
        expect(doc.version).toBe(1);
        expect(doc.content).toBe('from backup');
        expect(doc.history).toEqual([expect.objectContaining({ version: 1, action: 'restore', actor: 'system' })]);
        expect(doc.history[0]?.summary).toContain('v7');
      });

      it('restore with a stale expectedVersion raises StateConflictError', async () => {
        const state = await manager();
        await seed(state);
        const snap = await state.snapshotState('doc');
        await state.updateDocumentContent({ documentId: 'doc', content: 'x', actor: 'w' });
        await rejects(state.restoreSnapshot(snap, { expectedVersion: 1 }), StateConflictError);
      });
    });

    describe('workflows', () => {
      it('a new workflow has every stage pending, no current stage and iteration 1', async () => {
        const state = await manager();
        const wf = await state.createWorkflowState({ workflowId: 'wf', stages: ['research', 'draft', 'review'] });
        expect(wf).toMatchObject({
          workflowId: 'wf',
          stages: ['research', 'draft', 'review'],
          stage: null,
          completedStages: [],
          pendingStages: ['research', 'draft', 'review'],
          qualityScores: {},
          iteration: 1,
          data: {},
        });
        expect(await state.getWorkflowState('wf')).toEqual(wf);
      });

      it('duplicate and unknown workflows raise WorkflowExistsError / WorkflowNotFoundError', async () => {
        const state = await manager();
        await state.createWorkflowState({ workflowId: 'wf', stages: ['a'] });
        await rejects(state.createWorkflowState({ workflowId: 'wf', stages: ['b'] }), WorkflowExistsError);
        expect(await state.getWorkflowState('nope')).toBeNull();
        await rejects(state.updateStage({ workflowId: 'nope', stage: 'a' }), WorkflowNotFoundError);
        await rejects(state.completeStage({ workflowId: 'nope', stage: 'a', qualityScore: 1 }), WorkflowNotFoundError);
        await rejects(state.updateWorkflowData({ workflowId: 'nope', data: {} }), WorkflowNotFoundError);
      });

      it('stages run, complete with scores, and re-entering a completed stage is a revision loop', async () => {
        const state = await manager();
        await state.createWorkflowState({ workflowId: 'wf', stages: ['research', 'draft', 'review'] });
        let wf = await state.updateStage({ workflowId: 'wf', stage: 'research' });
        expect(wf.stage).toBe('research');
        wf = await state.completeStage({ workflowId: 'wf', stage: 'research', qualityScore: 0.9 });
        expect(wf.completedStages).toEqual(['research']);
        expect(wf.pendingStages).toEqual(['draft', 'review']);
        expect(wf.qualityScores).toEqual({ research: 0.9 });
        await state.updateStage({ workflowId: 'wf', stage: 'draft' });
        wf = await state.completeStage({ workflowId: 'wf', stage: 'draft', qualityScore: 0.4 });
        expect(wf.iteration).toBe(1);
        wf = await state.updateStage({ workflowId: 'wf', stage: 'draft' });
        expect(wf.stage).toBe('draft');
        expect(wf.completedStages).toEqual(['research']);
        expect(wf.pendingStages).toEqual(['draft', 'review']);
        expect(wf.iteration).toBe(2);
        wf = await state.completeStage({ workflowId: 'wf', stage: 'draft', qualityScore: 0.8 });
        expect(wf.qualityScores['draft']).toBe(0.8);
        expect(await state.getWorkflowState('wf')).toEqual(wf);
      });

      it('a revision loop back from the last stage reopens every later stage and counts one iteration per loop', async () => {
        const state = await manager();
        const stages = ['research', 'writing', 'editing', 'verification'];
        await state.createWorkflowState({ workflowId: 'wf', stages });
        const run = async (names: string[], score: number) => {
          for (const stage of names) {
            await state.updateStage({ workflowId: 'wf', stage });
            await state.completeStage({ workflowId: 'wf', stage, qualityScore: score });
          }
        };
        await run(stages.slice(0, 1), 0.5);
        await run(stages.slice(1), 0.2);
        for (let round = 2; round <= 3; round++) {
          const reopened = await state.updateStage({ workflowId: 'wf', stage: 'writing' });
          expect(reopened).toMatchObject({
            stage: 'writing',
            iteration: round,
            completedStages: ['research'],
            pendingStages: ['writing', 'editing', 'verification'],
            // Last scores are kept until each stage completes again: they say why it was reopened.
            qualityScores: { research: 0.5, writing: round / 10, editing: round / 10, verification: round / 10 },
          });
          await run(['writing', 'editing', 'verification'], (round + 1) / 10);
          const after = await state.getWorkflowState('wf');
          expect(after).toMatchObject({ iteration: round, completedStages: stages, pendingStages: [], stage: 'verification' });
        }
      });

      it('an unknown stage raises ValidationError naming the stages; nothing is written', async () => {
        const state = await manager();
        await state.createWorkflowState({ workflowId: 'wf', stages: ['a', 'b'] });
        const err = await rejects(state.updateStage({ workflowId: 'wf', stage: 'c' }), ValidationError);
        expect(err.message).toContain('`a`, `b`');
        await rejects(state.completeStage({ workflowId: 'wf', stage: 'c', qualityScore: 0.5 }), ValidationError);
        expect((await state.getWorkflowState('wf'))?.stage).toBeNull();
      });

      it('a quality score outside [0, 1] or not a number raises ValidationError', async () => {
        const state = await manager();
        await state.createWorkflowState({ workflowId: 'wf', stages: ['a'] });
        for (const qualityScore of [1.01, -0.1, Number.NaN, Number.POSITIVE_INFINITY, '0.5', null, undefined]) {
          await rejects(state.completeStage({ workflowId: 'wf', stage: 'a', qualityScore } as never), ValidationError);
        }
        const ok = await state.completeStage({ workflowId: 'wf', stage: 'a', qualityScore: 0 });
        expect(ok.qualityScores['a']).toBe(0);
        expect((await state.completeStage({ workflowId: 'wf', stage: 'a', qualityScore: 1 })).qualityScores['a']).toBe(1);
      });

      it('stages must be a non-empty array of unique non-empty strings', async () => {
        const state = await manager();
        for (const stages of [[], ['a', 'a'], ['a', ''], ['a', 3], 'a', undefined]) {
          await rejects(state.createWorkflowState({ workflowId: 'wf', stages } as never), ValidationError);
        }
        expect(await state.getWorkflowState('wf')).toBeNull();
      });

      it('workflow data is shallow-merged or replaced', async () => {
        const state = await manager();
        await state.createWorkflowState({ workflowId: 'wf', stages: ['a'], data: { documentId: 'doc' } });
        let wf = await state.updateWorkflowData({ workflowId: 'wf', data: { status: 'running' } });
        expect(wf.data).toEqual({ documentId: 'doc', status: 'running' });
        wf = await state.updateWorkflowData({ workflowId: 'wf', data: { status: 'done' }, mode: 'replace' });
        expect(wf.data).toEqual({ status: 'done' });
      });

      it('concurrent workflow writes through several managers lose nothing', async () => {
        const ms = await Promise.all([manager(), manager(), manager()]);
        await ms[0]!.createWorkflowState({ workflowId: 'wf', stages: ['a', 'b', 'c'] });
        await Promise.all(
          Array.from({ length: 30 }, (_, i) => ms[i % 3]!.updateWorkflowData({ workflowId: 'wf', data: { [`k${i}`]: i } })),
        );
        const wf = await ms[1]!.getWorkflowState('wf');
        expect(Object.keys(wf!.data)).toHaveLength(30);
      });
    });

    describe('concurrency', () => {
      it('50 concurrent writers through several managers without locks: every write is exactly one version', async () => {
        const ms = await Promise.all(Array.from({ length: 5 }, () => manager()));
        await seed(ms[0]!);
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            ms[i % 5]!.updateDocumentContent({ documentId: 'doc', content: `writer ${i}`, actor: `w${i}` }),
          ),
        );
        const doc = await ms[2]!.getDocumentState('doc');
        expect(doc?.version).toBe(51);
        const history = await ms[3]!.getStateHistory('doc');
        expect(history.map((h) => h.version)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
        expect(new Set(history.slice(1).map((h) => h.actor)).size).toBe(50);
        expect(doc?.content).toBe(`writer ${history.at(-1)!.actor.slice(1)}`);
      });

      it('50 concurrent read-modify-write metadata updates without locks keep every key', async () => {
        const ms = await Promise.all(Array.from({ length: 5 }, () => manager({ cache: { ttlMs: 60_000 } })));
        await seed(ms[0]!);
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            ms[i % 5]!.updateDocumentMetadata({ documentId: 'doc', metadata: { [`k${i}`]: i }, actor: `w${i}` }),
          ),
        );
        // Straight from the store: nothing lost.
        const stored = await (await manager()).getDocumentState('doc');
        expect(stored?.version).toBe(51);
        for (let i = 0; i < 50; i++) expect(stored?.metadata[`k${i}`]).toBe(i);
        // A caching manager that wrote only some of them converges through the change feed.
        const doc = await waitFor(async () => {
          const d = await ms[4]!.getDocumentState('doc');
          return d?.version === 51 ? d : undefined;
        }, 'the caching manager to see every write');
        for (let i = 0; i < 50; i++) expect(doc!.metadata[`k${i}`]).toBe(i);
      });

      it('50 optimistic writers (expectedVersion + retry on conflict) all land their edit', async () => {
        const ms = await Promise.all(Array.from({ length: 5 }, () => manager()));
        await seed(ms[0]!, 'doc', 'start');
        await Promise.all(
          Array.from({ length: 50 }, async (_, i) => {
            const m = ms[i % 5]!;
            for (;;) {
              const doc = (await m.getDocumentState('doc'))!;
              try {
                await m.updateDocumentContent({
                  documentId: 'doc',
                  content: `${doc.content}\nline ${i}`,
                  actor: `w${i}`,
                  expectedVersion: doc.version,
                });
                return;
              } catch (err) {
                if (!(err instanceof StateConflictError)) throw err;
              }
            }
          }),
        );
        const doc = await ms[1]!.getDocumentState('doc');
        expect(doc?.version).toBe(51);
        const lines = doc!.content.split('\n');
        expect(lines).toHaveLength(51);
        expect(new Set(lines).size).toBe(51);
      });

      it('50 concurrent writers under withLock through several managers never conflict and lose nothing', async () => {
        const ms = await Promise.all(Array.from({ length: 5 }, () => manager()));
        await seed(ms[0]!, 'doc', 'start');
        let inside = 0;
        let maxInside = 0;
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            ms[i % 5]!.withLock('doc', async () => {
              inside++;
              maxInside = Math.max(maxInside, inside);
              try {
                const m = ms[i % 5]!;
                const doc = (await m.getDocumentState('doc'))!;
                await m.updateDocumentContent({
                  documentId: 'doc',
                  content: `${doc.content}\nline ${i}`,
                  actor: `w${i}`,
                  expectedVersion: doc.version,
                });
              } finally {
                inside--;
              }
            }),
          ),
        );
        expect(maxInside).toBe(1);
        const doc = await ms[0]!.getDocumentState('doc');
        expect(doc?.version).toBe(51);
        expect(new Set(doc!.content.split('\n')).size).toBe(51);
      });
    });

    describe('locks', () => {
      it('a lock is exclusive across managers until released, and its fence grows', async () => {
        const a = await manager();
        const b = await manager();
        const held = await a.locks.acquire('doc');
        expect(a.locks.isHeld('doc')).toBe(true);
        expect(await b.locks.tryAcquire('doc')).toBeNull();
        const err = await rejects(b.locks.acquire('doc', { waitMs: 30 }), LockTimeoutError);
        expect(err.code).toBe('lock_timeout');
        await held.release();
        expect(a.locks.isHeld('doc')).toBe(false);
        const next = await b.locks.acquire('doc', { waitMs: 1000 });
        expect(next.fence).toBeGreaterThan(held.fence);
        await next.release();
      });

      it('a waiter gets the lock as soon as the holder releases it', async () => {
        const a = await manager();
        const b = await manager();
        const held = await a.locks.acquire('doc');
        const waiting = b.locks.acquire('doc', { waitMs: 10_000 });
        await held.release();
        const got = await waiting;
        expect(got.held).toBe(true);
        await got.release();
      });

      it('withLock releases on error and rethrows', async () => {
        const a = await manager();
        await expect(
          a.withLock('doc', async () => {
            throw new Error('boom');
          }),
        ).rejects.toThrow('boom');
        expect(a.locks.isHeld('doc')).toBe(false);
        const b = await manager();
        expect(await b.locks.tryAcquire('doc')).not.toBeNull();
      });

      it('withLock is re-entrant for the same document', async () => {
        const a = await manager();
        const result = await a.withLock('doc', () => a.withLock('doc', () => 42, { waitMs: 50 }));
        expect(result).toBe(42);
      });

      it('an expired lease is taken over, and the stale holder’s writes are refused (fencing)', async () => {
        const raw = await connect();
        // A holder whose renewals silently fail, like a process paused past its lease.
        const stalled = new Proxy(raw, {
          get(target, prop, receiver) {
            if (prop === 'renewLock') return async () => true;
            if (prop === 'close') return async () => undefined;
            const value = Reflect.get(target, prop, receiver) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        });
        const a = await manager({ locks: { ttlMs: 60 } }, stalled);
        const b = await manager();
        await seed(b);
        const err = await rejects(
          a.withLock('doc', async (lock) => {
            const taken = await b.locks.acquire('doc', { waitMs: 5000 });
            expect(taken.fence).toBeGreaterThan(lock.fence);
            try {
              await a.updateDocumentContent({ documentId: 'doc', content: 'stale write', actor: 'a' });
            } finally {
              await taken.release();
            }
          }),
          LockLostError,
        );
        expect(err.code).toBe('lock_lost');
        const doc = await b.getDocumentState('doc');
        expect(doc?.version).toBe(1);
      });

      it('a lost lease aborts the holder’s signal', async () => {
        const raw = await connect();
        const losing = new Proxy(raw, {
          get(target, prop, receiver) {
            if (prop === 'renewLock') return async () => false;
            if (prop === 'close') return async () => undefined;
            const value = Reflect.get(target, prop, receiver) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        });
        const a = await manager({ locks: { ttlMs: 30 } }, losing);
        const reason = await a.withLock(
          'doc',
          (lock) => new Promise((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason))),
        );
        expect(reason).toBeInstanceOf(LockLostError);
      });

      it('a lease held longer than its ttl is renewed, so nobody else gets it', async () => {
        const a = await manager({ locks: { ttlMs: 300 } });
        const b = await manager();
        await a.withLock('doc', async () => {
          // Three lease lengths: only renewals can keep it held that long.
          const deadline = Date.now() + 900;
          while (Date.now() < deadline) {
            expect(await b.locks.tryAcquire('doc')).toBeNull();
            await new Promise((r) => setTimeout(r, 50));
          }
        });
      });
    });

    describe('cache, watch and metrics', () => {
      it('the cache never serves a value older than this manager’s own write', async () => {
        const state = await manager({ cache: { ttlMs: 60_000 } });
        await seed(state);
        for (let i = 0; i < 20; i++) {
          const written = await state.updateDocumentContent({ documentId: 'doc', content: `c${i}`, actor: 'w' });
          const read = await state.getDocumentState('doc');
          expect(read?.version).toBe(written.version);
          expect(read?.content).toBe(`c${i}`);
        }
        await state.createWorkflowState({ workflowId: 'wf', stages: ['a'] });
        await state.getWorkflowState('wf');
        await state.updateStage({ workflowId: 'wf', stage: 'a' });
        expect((await state.getWorkflowState('wf'))?.stage).toBe('a');
      });

      it('another manager’s write invalidates the cache through the change feed', async () => {
        const a = await manager({ cache: { ttlMs: 60_000 } });
        const b = await manager();
        await seed(b);
        expect((await a.getDocumentState('doc'))?.version).toBe(1);
        await b.updateDocumentContent({ documentId: 'doc', content: 'from b', actor: 'b' });
        await waitFor(async () => (await a.getDocumentState('doc'))?.content === 'from b', 'the cache to see b’s write');
        await b.createWorkflowState({ workflowId: 'wf', stages: ['x'] });
        expect((await a.getWorkflowState('wf'))?.stage).toBeNull();
        await b.updateStage({ workflowId: 'wf', stage: 'x' });
        await waitFor(async () => (await a.getWorkflowState('wf'))?.stage === 'x', 'the workflow cache to see b’s write');
      });

      it('watch delivers change events across managers, in order, and stops on unsubscribe', async () => {
        const a = await manager();
        const b = await manager();
        const forDoc: ChangeEvent[] = [];
        const all: ChangeEvent[] = [];
        const sub = b.watch('doc', (e) => forDoc.push(e));
        const subAll = b.watch('*', (e) => all.push(e));
        await Promise.all([sub.ready, subAll.ready]);
        await seed(a);
        await a.updateDocumentContent({ documentId: 'doc', content: 'x', actor: 'alice' });
        await seed(a, 'other');
        await a.createWorkflowState({ workflowId: 'wf', stages: ['s'] });
        await waitFor(() => forDoc.length >= 2 && all.length >= 4, 'the change events');
        expect(forDoc.map((e) => [e.kind, e.id, e.version, e.action])).toEqual([
          ['document', 'doc', 1, 'create'],
          ['document', 'doc', 2, 'update_content'],
        ]);
        expect(forDoc[1]?.actor).toBe('alice');
        expect(forDoc[1]?.timestamp).toBeInstanceOf(Date);
        expect(all.map((e) => `${e.kind}:${e.id}`)).toEqual(['document:doc', 'document:doc', 'document:other', 'workflow:wf']);
        const revisions = all.map((e) => e.revision);
        expect([...revisions].sort((x, y) => x - y)).toEqual(revisions);
        expect(new Set(revisions).size).toBe(revisions.length);
        await sub.unsubscribe();
        await a.updateDocumentContent({ documentId: 'doc', content: 'y', actor: 'alice' });
        await waitFor(() => all.length >= 5, 'the event after unsubscribe reaching the other watcher');
        expect(forDoc).toHaveLength(2);
        const forWf: ChangeEvent[] = [];
        b.watch({ workflowId: 'wf' }, (e) => forWf.push(e));
        await a.updateStage({ workflowId: 'wf', stage: 's' });
        await waitFor(() => forWf.length === 1, 'the workflow event');
        expect(forWf[0]).toMatchObject({ kind: 'workflow', id: 'wf', version: 2, action: 'workflow_update' });
      });

      it('a throwing watch handler does not stop the others', async () => {
        const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
        const a = await manager();
        const seen: number[] = [];
        a.watch('doc', () => {
          throw new Error('bad handler');
        });
        a.watch('doc', (e) => seen.push(e.version));
        await seed(a);
        await a.updateDocumentContent({ documentId: 'doc', content: 'x', actor: 'w' });
        await waitFor(() => seen.length === 2, 'both events');
        expect(warn).toHaveBeenCalled();
        warn.mockRestore();
      });

      it('metrics count documents, workflows, changes and the average version, across managers', async () => {
        const a = await manager();
        const b = await manager();
        expect(a.metrics()).toEqual({ activeDocuments: 0, activeWorkflows: 0, totalStateChanges: 0, averageDocumentVersion: 0 });
        await seed(a, 'd1');
        await seed(a, 'd2');
        await a.updateDocumentContent({ documentId: 'd1', content: 'x', actor: 'w' });
        await a.updateDocumentContent({ documentId: 'd1', content: 'y', actor: 'w' });
        await a.createWorkflowState({ workflowId: 'wf', stages: ['s'] });
        await a.updateStage({ workflowId: 'wf', stage: 's' });
        expect(a.metrics()).toEqual({ activeDocuments: 2, activeWorkflows: 1, totalStateChanges: 6, averageDocumentVersion: 2 });
        expect(await b.refreshMetrics()).toEqual(a.metrics());
        await b.updateDocumentContent({ documentId: 'd2', content: 'z', actor: 'w' });
        await waitFor(() => a.metrics().totalStateChanges === 7, 'a’s metrics to see b’s write');
        expect(a.metrics().averageDocumentVersion).toBe(2.5);
      });
    });

    describe('exact text', () => {
      // A store returns exactly the string it was given, code unit for code unit: an agent that
      // cut an emoji with `.slice()` leaves a lone surrogate, and JavaScript strings may hold NUL.
      // Text encoded as UTF-8 on the way in would come back with U+FFFD instead (and two ids that
      // differ only there would become one).
      const TRICKY = [
        'cut emoji \uD83D',
        '\uDE00 a lone low half first',
        'reversed \uDE00\uD83D pair',
        'nul \u0000 inside',
        'ok 😀 then \uD83D, \u0000 and a real \uFFFD',
        '\uDBFF',
      ];

      it('content, metadata (keys and values), actor and summary come back exactly, from another manager too', async () => {
        const [writer, reader] = [await manager(), await manager()];
        for (const [i, text] of TRICKY.entries()) {
          const documentId = `doc${i}`;
          await writer.createDocumentState({ documentId, topic: text, requirements: [text], context: { [text]: text }, content: text });
          await writer.updateDocumentContent({ documentId, content: `${text}\n${text}`, actor: text, summary: text });
          await writer.updateDocumentMetadata({ documentId, metadata: { [text]: [text, { [text]: text }] }, actor: `${text}!` });
          const doc = (await reader.getDocumentState(documentId))!;
          expect(doc.content).toBe(`${text}\n${text}`);
          expect(doc.metadata).toEqual({ topic: text, requirements: [text], context: { [text]: text }, [text]: [text, { [text]: text }] });
          const history = await reader.getStateHistory(documentId);
          expect(history.map((h) => h.actor)).toEqual(['system', text, `${text}!`]);
          expect(history[1]!.summary!.startsWith(`${text}: `)).toBe(true);
          expect((await reader.getDocumentAtVersion(documentId, 2)).content).toBe(`${text}\n${text}`);
          expect((await reader.snapshotState(documentId)).content).toBe(`${text}\n${text}`);
        }
      });

      it('document ids come back exactly and ids that differ only in a lone surrogate or NUL stay distinct', async () => {
        const [writer, reader] = [await manager(), await manager()];
        const ids = ['id\uD800', 'id\uDBFF', 'id\uFFFD', 'id\uDC00\uD800', 'id\u0000', 'id'];
        for (const documentId of ids)
          await writer.createDocumentState({ documentId, topic: 't', requirements: [], context: {}, content: documentId });
        for (const documentId of ids) {
          const doc = (await reader.getDocumentState(documentId))!;
          expect(doc.documentId).toBe(documentId);
          expect(doc.content).toBe(documentId);
        }
        const listed = (await (await connect()).listDocuments()).map((d) => d.documentId);
        expect([...listed].sort()).toEqual([...ids].sort());
        await writer.updateDocumentContent({ documentId: 'id\uD800', content: 'changed', actor: 'w' });
        expect((await reader.getDocumentState('id\uDBFF'))?.version).toBe(1);
        expect((await reader.getStateHistory('id\uD800')).map((h) => h.version)).toEqual([1, 2]);
      });

      it('locks on ids that differ only in a lone surrogate are different locks', async () => {
        const store = await connect();
        expect(await store.tryAcquireLock('doc:k\uD800', 10_000)).not.toBeNull();
        expect(await store.tryAcquireLock('doc:k\uDBFF', 10_000)).not.toBeNull();
        expect(await store.tryAcquireLock('doc:k\uFFFD', 10_000)).not.toBeNull();
        expect(await store.tryAcquireLock('doc:k\uD800', 10_000)).toBeNull();
      });

      it('workflow ids, stages and data come back exactly, from another manager too', async () => {
        const [writer, reader] = [await manager(), await manager()];
        for (const [i, text] of TRICKY.entries()) {
          const workflowId = `wf${i}${text}`;
          await writer.createWorkflowState({ workflowId, stages: [text, 'b'], data: { [text]: text } });
          await writer.updateStage({ workflowId, stage: text });
          await writer.updateWorkflowData({ workflowId, data: { nested: { [text]: [text] } } });
          const wf = (await reader.getWorkflowState(workflowId))!;
          expect(wf).toMatchObject({ workflowId, stages: [text, 'b'], stage: text, data: { [text]: text, nested: { [text]: [text] } } });
        }
        expect(await reader.getWorkflowState('wf0cut emoji \uDBFF')).toBeNull();
      });

      it('the raw port and the change feed keep every string exactly', async () => {
        const store = await connect();
        const start = await store.currentRevision();
        const now = new Date('2024-01-01T00:00:00Z');
        for (const text of TRICKY) {
          const document: DocumentRecord = {
            documentId: text,
            version: 1,
            content: text,
            metadata: { [text]: text },
            createdAt: now,
            updatedAt: now,
          };
          const change: StateChange = { version: 1, timestamp: now, actor: text, action: 'create', summary: text };
          expect((await store.commitDocument({ document, change, expectedVersion: null, historyLimit: 10 })).ok).toBe(true);
          expect(await store.getDocument(text)).toEqual(document);
          expect(await store.getVersion(text, 1)).toEqual(document);
          expect(await store.getHistory(text)).toEqual([change]);
          const wf = {
            workflowId: text,
            stages: [text],
            stage: text,
            completedStages: [text],
            pendingStages: [],
            qualityScores: { [text]: 1 },
            iteration: 1,
            data: { [text]: text },
            createdAt: now,
            updatedAt: now,
            revision: 0,
          };
          expect(await store.commitWorkflow(wf, null)).toEqual({ ok: true, revision: 1 });
          expect(await store.getWorkflow(text)).toEqual({ ...wf, revision: 1 });
        }
        expect((await store.listDocuments()).map((d) => d.documentId).sort()).toEqual([...TRICKY].sort());
        expect((await store.listWorkflows()).map((w) => w.workflowId).sort()).toEqual([...TRICKY].sort());
        const events = await store.changesSince(start);
        expect(events.filter((e) => e.kind === 'document').map((e) => [e.id, e.actor])).toEqual(TRICKY.map((t) => [t, t]));
        expect(events.filter((e) => e.kind === 'workflow').map((e) => e.id)).toEqual(TRICKY);
      });
    });

    describe('the raw StateStore port', () => {
      const now = new Date('2024-01-01T00:00:00Z');
      function record(version: number, content = `v${version}`): DocumentRecord {
        return {
          documentId: 'raw',
          version,
          content,
          metadata: { v: version },
          createdAt: now,
          updatedAt: new Date(now.getTime() + version),
        };
      }
      function change(version: number): StateChange {
        return {
          version,
          timestamp: new Date(now.getTime() + version),
          actor: 'raw',
          action: version === 1 ? 'create' : 'update_content',
          summary: `s${version}`,
        };
      }

      it('commits compare-and-swap: exists, not_found and conflict write nothing', async () => {
        const store = await connect();
        expect(await store.commitDocument({ document: record(2), change: change(2), expectedVersion: 1, historyLimit: 10 })).toMatchObject({
          ok: false,
          reason: 'not_found',
          current: null,
        });
        const created = await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 10 });
        expect(created.ok).toBe(true);
        const again = await store.commitDocument({
          document: record(1, 'dup'),
          change: change(1),
          expectedVersion: null,
          historyLimit: 10,
        });
        expect(again).toMatchObject({ ok: false, reason: 'exists' });
        expect(again.ok === false && again.current?.content).toBe('v1');
        expect((await store.commitDocument({ document: record(2), change: change(2), expectedVersion: 1, historyLimit: 10 })).ok).toBe(
          true,
        );
        const stale = await store.commitDocument({ document: record(2, 'stale'), change: change(2), expectedVersion: 1, historyLimit: 10 });
        expect(stale).toMatchObject({ ok: false, reason: 'conflict' });
        expect(stale.ok === false && stale.current?.version).toBe(2);
        expect(await store.getDocument('raw')).toEqual(record(2));
        expect(await store.getHistory('raw')).toEqual([change(1), change(2)]);
        expect(await store.getVersion('raw', 1)).toEqual({ ...record(1), createdAt: now });
      });

      it('rejects a commit whose version does not follow the expected one', async () => {
        const store = await connect();
        await expect(
          store.commitDocument({ document: record(3), change: change(3), expectedVersion: null, historyLimit: 10 }),
        ).rejects.toThrow(ValidationError);
      });

      it('compacts beyond historyLimit and reports the oldest kept version', async () => {
        const store = await connect();
        await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 3 });
        for (let v = 2; v <= 6; v++)
          await store.commitDocument({ document: record(v), change: change(v), expectedVersion: v - 1, historyLimit: 3 });
        expect(await store.oldestVersion('raw')).toBe(4);
        expect(await store.oldestVersion('missing')).toBeNull();
        expect(await store.getVersion('raw', 3)).toBeNull();
        expect((await store.getVersion('raw', 4))?.content).toBe('v4');
        expect((await store.getHistory('raw')).map((h) => h.version)).toEqual([4, 5, 6]);
        expect((await store.getHistory('raw', { limit: 2 })).map((h) => h.version)).toEqual([5, 6]);
        expect(await store.listDocuments()).toEqual([{ documentId: 'raw', version: 6, updatedAt: record(6).updatedAt }]);
      });

      it('getHistory reads a range: before, after and limit, within the kept versions', async () => {
        const store = await connect();
        await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 8 });
        for (let v = 2; v <= 20; v++)
          await store.commitDocument({ document: record(v), change: change(v), expectedVersion: v - 1, historyLimit: 8 });
        const versions = async (range: Parameters<StateStore['getHistory']>[1]) =>
          (await store.getHistory('raw', range)).map((h) => h.version);
        expect(await versions(undefined)).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
        expect(await versions({ before: 16 })).toEqual([13, 14, 15]);
        expect(await versions({ before: 16, limit: 2 })).toEqual([14, 15]);
        expect(await versions({ after: 16 })).toEqual([17, 18, 19, 20]);
        expect(await versions({ after: 2, limit: 2 })).toEqual([13, 14]);
        expect(await versions({ after: 14, before: 19, limit: 3 })).toEqual([16, 17, 18]);
        expect(await versions({ after: 14, before: 19 })).toEqual([15, 16, 17, 18]);
        expect(await versions({ before: 13 })).toEqual([]);
        expect(await versions({ after: 20 })).toEqual([]);
        expect(await versions({ limit: 0 })).toEqual([]);
        expect(await store.getHistory('raw', { before: 16, limit: 1 })).toEqual([change(15)]);
        expect(await store.getHistory('missing', { before: 5 })).toEqual([]);
      });

      it('keeps a change feed with strictly increasing revisions, replayable with watch({ afterRevision })', async () => {
        const store = await connect();
        const start = await store.currentRevision();
        await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 10 });
        await store.commitDocument({ document: record(2), change: change(2), expectedVersion: 1, historyLimit: 10 });
        const wf = {
          workflowId: 'w',
          stages: ['a'],
          stage: null,
          completedStages: [],
          pendingStages: ['a'],
          qualityScores: {},
          iteration: 1,
          data: {},
          createdAt: now,
          updatedAt: now,
          revision: 0,
        };
        expect(await store.commitWorkflow(wf, null)).toEqual({ ok: true, revision: 1 });
        const events = await store.changesSince(start);
        expect(events.map((e) => [e.kind, e.id, e.version, e.action])).toEqual([
          ['document', 'raw', 1, 'create'],
          ['document', 'raw', 2, 'update_content'],
          ['workflow', 'w', 1, 'workflow_create'],
        ]);
        expect(events[0]!.revision).toBeGreaterThan(start);
        expect(events[1]!.revision).toBeGreaterThan(events[0]!.revision);
        expect(await store.currentRevision()).toBe(events[2]!.revision);
        expect(await store.changesSince(events[0]!.revision, 1)).toEqual([events[1]]);
        const replayed: ChangeEvent[] = [];
        const stop = await store.watch((e) => replayed.push(e), { afterRevision: events[0]!.revision });
        await waitFor(() => replayed.length === 2, 'the replayed events');
        await store.commitDocument({ document: record(3), change: change(3), expectedVersion: 2, historyLimit: 10 });
        await waitFor(() => replayed.length === 3, 'the live event');
        expect(replayed.map((e) => e.version)).toEqual([2, 1, 3]);
        await stop();
      });

      it('compare-and-swaps workflows on their revision', async () => {
        const store = await connect();
        const wf = {
          workflowId: 'w',
          stages: ['a'],
          stage: null,
          completedStages: [],
          pendingStages: ['a'],
          qualityScores: {},
          iteration: 1,
          data: { n: 1 },
          createdAt: now,
          updatedAt: now,
          revision: 0,
        };
        expect((await store.commitWorkflow(wf, null)).ok).toBe(true);
        expect((await store.commitWorkflow(wf, null)).ok).toBe(false);
        expect((await store.commitWorkflow({ ...wf, stage: 'a', revision: 1 }, 1)).ok).toBe(true);
        const stale = await store.commitWorkflow({ ...wf, stage: null, revision: 1 }, 1);
        expect(stale.ok).toBe(false);
        expect(stale.ok === false && stale.current?.revision).toBe(2);
        expect(await store.getWorkflow('w')).toEqual({ ...wf, stage: 'a', revision: 2 });
        expect(await store.listWorkflows()).toHaveLength(1);
      });

      it('leases locks with growing fences; only the token holder renews or releases', async () => {
        const store = await connect();
        const first = await store.tryAcquireLock('k', 10_000);
        expect(first).not.toBeNull();
        expect(await store.tryAcquireLock('k', 10_000)).toBeNull();
        expect(await store.renewLock('k', 'not-the-token', 10_000)).toBe(false);
        await store.releaseLock('k', 'not-the-token');
        expect(await store.tryAcquireLock('k', 10_000)).toBeNull();
        expect(await store.renewLock('k', first!.token, 10_000)).toBe(true);
        await store.releaseLock('k', first!.token);
        const second = await store.tryAcquireLock('k', 30);
        expect(second!.fence).toBeGreaterThan(first!.fence);
        const third = await waitFor(() => store.tryAcquireLock('k', 10_000), 'the short lease to expire');
        expect(third!.fence).toBeGreaterThan(second!.fence);
        expect(await store.renewLock('k', second!.token, 10_000)).toBe(false);
      });

      it('refuses a commit whose fence is not the lock’s latest', async () => {
        const store = await connect();
        await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 10 });
        const old = await store.tryAcquireLock('doc:raw', 20);
        const fresh = await waitFor(() => store.tryAcquireLock('doc:raw', 10_000), 'the lease to expire');
        const refused = await store.commitDocument({
          document: record(2),
          change: change(2),
          expectedVersion: 1,
          historyLimit: 10,
          fence: { key: 'doc:raw', token: old!.fence },
        });
        expect(refused).toMatchObject({ ok: false, reason: 'fenced' });
        const accepted = await store.commitDocument({
          document: record(2),
          change: change(2),
          expectedVersion: 1,
          historyLimit: 10,
          fence: { key: 'doc:raw', token: fresh!.fence },
        });
        expect(accepted.ok).toBe(true);
        expect((await store.getDocument('raw'))?.version).toBe(2);
      });

      it('hands out copies: mutating what came back or what was passed in changes nothing stored', async () => {
        const store = await connect();
        const doc = record(1);
        await store.commitDocument({ document: doc, change: change(1), expectedVersion: null, historyLimit: 10 });
        (doc.metadata as Record<string, unknown>)['v'] = 'mutated';
        const read = (await store.getDocument('raw'))!;
        (read.metadata as Record<string, unknown>)['v'] = 'mutated too';
        expect((await store.getDocument('raw'))?.metadata).toEqual({ v: 1 });
      });

      it('counts documents, workflows, changes and versions', async () => {
        const store = await connect();
        await store.commitDocument({ document: record(1), change: change(1), expectedVersion: null, historyLimit: 10 });
        await store.commitDocument({ document: record(2), change: change(2), expectedVersion: 1, historyLimit: 1 });
        expect(await store.stats()).toEqual({ documents: 1, workflows: 0, totalChanges: 2, sumOfVersions: 2 });
      });
    });
  });
}
