import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DocumentRecord } from '../../src/state/store.js';
import type { ChangeAction, ChangeEvent, StateChange } from '../../src/state/types.js';
import { TransportError } from '../../src/errors.js';
import { RedisStore, createRedisStore } from '../../src/backends/redis/index.js';
import { resolveStore } from '../../src/connect.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, countKeys, redisNamespace, redisUrl } from './helpers.js';

const up = await serviceAvailable('redis');

function record(documentId: string, version: number, content: string, createdAt = new Date(1_700_000_000_000)): DocumentRecord {
  return { documentId, version, content, metadata: { v: version }, createdAt, updatedAt: new Date(createdAt.getTime() + version) };
}

function change(version: number, action: ChangeAction = version === 1 ? 'create' : 'update_content'): StateChange {
  return { version, timestamp: new Date(1_700_000_000_000 + version), actor: 'tester', action, summary: `v${version}` };
}

/** Commits version `expected + 1` of `id` (or creates it when `expected` is null). */
function commit(
  store: RedisStore,
  id: string,
  expected: number | null,
  content: string,
  historyLimit = 1000,
  fence?: { key: string; token: number },
) {
  const version = (expected ?? 0) + 1;
  return store.commitDocument({
    document: record(id, version, content),
    change: change(version),
    expectedVersion: expected,
    historyLimit,
    ...(fence ? { fence } : {}),
  });
}

describe.runIf(up)('Redis state store primitives (real Redis)', () => {
  const ns = redisNamespace('rs');
  const url = redisUrl(ns);
  const open: RedisStore[] = [];
  let s: RedisStore;

  function store(): RedisStore {
    const st = createRedisStore(url);
    open.push(st);
    return st;
  }

  beforeAll(async () => {
    s = store();
    await s.connect();
  });
  afterAll(async () => {
    await Promise.all(open.map((st) => st.close()));
    await cleanupNamespace(ns);
    expect(await countKeys(ns)).toBe(0);
  });

  it('is chosen by a redis:// URL', async () => {
    const st = await resolveStore(url);
    open.push(st as RedisStore);
    expect(st.kind).toBe('redis');
    expect(st).toBeInstanceOf(RedisStore);
  });

  it('creates, reads and compare-and-swaps a document', async () => {
    expect(await s.getDocument('doc-a')).toBeNull();
    const created = await commit(s, 'doc-a', null, 'one');
    expect(created.ok).toBe(true);
    const doc = await s.getDocument('doc-a');
    expect(doc).toEqual(record('doc-a', 1, 'one'));
    expect(doc!.createdAt).toBeInstanceOf(Date);

    const dup = await commit(s, 'doc-a', null, 'again');
    expect(dup).toMatchObject({ ok: false, reason: 'exists' });
    if (!dup.ok) expect(dup.current?.content).toBe('one');

    expect(await commit(s, 'doc-a', 1, 'two')).toMatchObject({ ok: true });
    const stale = await commit(s, 'doc-a', 1, 'lost update');
    expect(stale).toMatchObject({ ok: false, reason: 'conflict' });
    if (!stale.ok) expect(stale.current?.version).toBe(2);
    expect(await commit(s, 'missing', 3, 'x')).toEqual({ ok: false, reason: 'not_found', current: null });
    expect((await s.getDocument('doc-a'))?.content).toBe('two');
  });

  it('keeps every version with its history entry and compacts beyond historyLimit', async () => {
    for (let v = 0; v < 6; v++) expect((await commit(s, 'doc-h', v === 0 ? null : v, `c${v + 1}`, 3)).ok).toBe(true);
    expect((await s.getDocument('doc-h'))?.version).toBe(6);
    expect(await s.oldestVersion('doc-h')).toBe(4);
    expect(await s.getVersion('doc-h', 3)).toBeNull();
    expect((await s.getVersion('doc-h', 4))?.content).toBe('c4');
    const history = await s.getHistory('doc-h');
    expect(history.map((h) => h.version)).toEqual([4, 5, 6]);
    expect(history[0]!.timestamp).toBeInstanceOf(Date);
    expect(history[0]).toEqual(change(4));
    expect((await s.getHistory('doc-h', { limit: 2 })).map((h) => h.version)).toEqual([5, 6]);
    expect(await s.getHistory('nope')).toEqual([]);
    expect(await s.oldestVersion('nope')).toBeNull();
    // A larger limit later keeps more from then on; the version number keeps counting.
    expect((await commit(s, 'doc-h', 6, 'c7', 10)).ok).toBe(true);
    expect((await s.getHistory('doc-h')).map((h) => h.version)).toEqual([4, 5, 6, 7]);
  });

  it('never loses an update under concurrent writers on several connections', async () => {
    const stores = [s, store(), store()];
    await commit(s, 'doc-c', null, '0');
    const writers = 12;
    await Promise.all(
      Array.from({ length: writers }, async (_, i) => {
        const st = stores[i % stores.length]!;
        for (;;) {
          const cur = (await st.getDocument('doc-c'))!;
          const r = await commit(st, 'doc-c', cur.version, `${cur.content},${i}`);
          if (r.ok) return;
        }
      }),
    );
    const doc = (await s.getDocument('doc-c'))!;
    expect(doc.version).toBe(writers + 1);
    expect(
      doc.content
        .split(',')
        .slice(1)
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: writers }, (_, i) => i));
    expect((await s.getHistory('doc-c')).map((h) => h.version)).toEqual(Array.from({ length: writers + 1 }, (_, i) => i + 1));
  });

  it('leases locks with growing fencing numbers, and a stale fence cannot write', async () => {
    const g1 = await s.tryAcquireLock('doc-f', 10_000);
    expect(g1).not.toBeNull();
    expect(await s.tryAcquireLock('doc-f', 10_000)).toBeNull();
    expect(await s.renewLock('doc-f', 'not-mine', 10_000)).toBe(false);
    expect(await s.renewLock('doc-f', g1!.token, 10_000)).toBe(true);
    expect((await commit(s, 'doc-f', null, 'a', 100, { key: 'doc-f', token: g1!.fence })).ok).toBe(true);
    await s.releaseLock('doc-f', 'not-mine');
    expect(await s.tryAcquireLock('doc-f', 10_000)).toBeNull();
    await s.releaseLock('doc-f', g1!.token);
    const g2 = await store().tryAcquireLock('doc-f', 10_000);
    expect(g2!.fence).toBeGreaterThan(g1!.fence);
    expect(await commit(s, 'doc-f', 1, 'stale', 100, { key: 'doc-f', token: g1!.fence })).toMatchObject({ ok: false, reason: 'fenced' });
    expect((await commit(s, 'doc-f', 1, 'fresh', 100, { key: 'doc-f', token: g2!.fence })).ok).toBe(true);
    expect(await s.renewLock('doc-f', g1!.token, 1000)).toBe(false);
    await s.releaseLock('doc-f', g2!.token);
  });

  it('a lock lease runs out on its own', async () => {
    const g = await s.tryAcquireLock('short', 100);
    expect(g).not.toBeNull();
    const next = await waitFor(() => s.tryAcquireLock('short', 10_000), 'the lease to run out', 5000, 20);
    expect(next!.fence).toBe(g!.fence + 1);
    expect(await s.renewLock('short', g!.token, 1000)).toBe(false);
  });

  it('compare-and-swaps workflows on their revision', async () => {
    const now = new Date(1_700_000_000_000);
    const wf = {
      workflowId: 'wf-1',
      stages: ['draft', 'review'],
      stage: null,
      completedStages: [],
      pendingStages: ['draft', 'review'],
      qualityScores: {},
      iteration: 1,
      data: { doc: 'x' },
      createdAt: now,
      updatedAt: now,
      revision: 0,
    };
    expect(await s.commitWorkflow(wf, null)).toEqual({ ok: true, revision: 1 });
    expect(await s.commitWorkflow(wf, null)).toMatchObject({ ok: false });
    const got = await s.getWorkflow('wf-1');
    expect(got).toEqual({ ...wf, revision: 1 });
    expect(await s.commitWorkflow({ ...got!, stage: 'draft' }, 1)).toEqual({ ok: true, revision: 2 });
    const stale = await s.commitWorkflow({ ...got!, stage: 'review' }, 1);
    expect(stale.ok).toBe(false);
    if (!stale.ok) expect(stale.current?.stage).toBe('draft');
    expect(await s.commitWorkflow({ ...got!, workflowId: 'wf-none' }, 3)).toEqual({ ok: false, current: null });
    expect((await s.listWorkflows()).map((w) => w.workflowId)).toEqual(['wf-1']);
    expect(await s.getWorkflow('wf-none')).toBeNull();
  });

  it('lists documents and counts stats', async () => {
    const docs = await s.listDocuments();
    const a = docs.find((d) => d.documentId === 'doc-a');
    expect(a?.version).toBe(2);
    expect(a?.updatedAt).toBeInstanceOf(Date);
    const stats = await s.stats();
    expect(stats.documents).toBe(docs.length);
    expect(stats.workflows).toBe(1);
    expect(stats.sumOfVersions).toBe(docs.reduce((n, d) => n + d.version, 0));
    const workflowWrites = (await s.listWorkflows()).reduce((n, w) => n + w.revision, 0);
    expect(workflowWrites).toBe(2);
    expect(stats.totalChanges).toBe(stats.sumOfVersions + workflowWrites);
  });

  it('refuses a commit whose version does not follow the expected one', async () => {
    await expect(
      s.commitDocument({ document: record('doc-bad', 3, 'x'), change: change(3), expectedVersion: null, historyLimit: 10 }),
    ).rejects.toThrow(/must write version 1/);
  });

  it('has a change feed with a strictly increasing revision', async () => {
    const before = await s.currentRevision();
    await commit(s, 'doc-feed', null, 'x');
    await commit(s, 'doc-feed', 1, 'y');
    const events = await s.changesSince(before);
    expect(events.map((e) => [e.kind, e.id, e.version, e.action, e.revision])).toEqual([
      ['document', 'doc-feed', 1, 'create', before + 1],
      ['document', 'doc-feed', 2, 'update_content', before + 2],
    ]);
    expect(events[0]!.actor).toBe('tester');
    expect(events[0]!.timestamp).toBeInstanceOf(Date);
    expect(await s.currentRevision()).toBe(before + 2);
    expect(await s.changesSince(before, 1)).toHaveLength(1);
    expect((await s.changesSince(0)).length).toBe(before + 2);
  });

  it('watch delivers commits of other processes in order, and resumes from a revision', async () => {
    const watcher = store();
    const writer = store();
    const seen: ChangeEvent[] = [];
    const stop = await watcher.watch((e) => seen.push(e));
    const start = await writer.currentRevision();
    await commit(writer, 'doc-w', null, '1');
    await commit(writer, 'doc-w', 1, '2');
    const now = new Date();
    await writer.commitWorkflow(
      {
        workflowId: 'wf-w',
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
      },
      null,
    );
    await waitFor(() => seen.length >= 3, 'three events');
    expect(seen.map((e) => [e.revision, e.id, e.action])).toEqual([
      [start + 1, 'doc-w', 'create'],
      [start + 2, 'doc-w', 'update_content'],
      [start + 3, 'wf-w', 'workflow_create'],
    ]);
    await stop();
    await commit(writer, 'doc-w', 2, '3');
    const replay: number[] = [];
    const stop2 = await store().watch((e) => replay.push(e.revision), { afterRevision: start + 1 });
    await waitFor(() => replay.length >= 3, 'replayed events');
    expect(replay).toEqual([start + 2, start + 3, start + 4]);
    expect(seen).toHaveLength(3);
    await stop2();
  });

  it('an unreachable server fails connect with TransportError naming the URL', async () => {
    const st = createRedisStore('redis://127.0.0.1:1/0?namespace=nowhere');
    const err = await st.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(String((err as Error).message)).toContain('redis://127.0.0.1:1/0');
    await st.close();
  });
});
