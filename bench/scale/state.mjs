// Scale curves of the state manager (issue 25, items 2 and 3): the write path as the number of
// live documents grows, and reading an old version or the history as a document's history grows.
// SQLite points use `synchronous=normal` so they show the CPU and query cost per operation, not
// the fsync every durable commit pays (measured by state-cas/sqlite).
import { join } from 'node:path';
import { requireConcord } from '../lib/concord.mjs';

const LINES = Array.from(
  { length: 8 },
  (_, k) => `Section ${k + 1}: the agents summarise the findings of part ${k + 1} in about fifty words.`,
);
const CONTENTS = Array.from({ length: 64 }, (_, i) => {
  const lines = LINES.slice();
  lines[i % 8] = `Section ${(i % 8) + 1}: revision ${i} rewrites this paragraph with the reviewer's feedback applied.`;
  return lines.join('\n');
});

async function manager(engine, ctx, options = {}) {
  const { StateManager } = await requireConcord(['StateManager']);
  let store = 'memory://';
  if (engine === 'sqlite') {
    await requireConcord([], 'concord-agents/sqlite');
    store = `sqlite:${join(ctx.dir, 'scale.db')}?synchronous=normal`;
  } else if (engine === 'redis') {
    await requireConcord([], 'concord-agents/redis');
    store = `${ctx.redisUrl}?namespace=${ctx.ns}`;
  }
  const state = new StateManager({ store, ...options });
  await state.ready();
  return state;
}

/** Runs `op` until at least `ms` have passed and `minOps` ops were done; returns ops and seconds. */
async function timed(op, ms, minOps) {
  let n = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ms || n < minOps) {
    for (let k = 0; k < 16; k++) await op(n++);
    elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  return { n, seconds: elapsed / 1000 };
}

/**
 * The floor of the memory write curve: documents in a plain Map, each update a compare-and-swap
 * that stores a new record and appends its version to a bounded history (1,000, the manager's
 * default). What the runtime charges for spreading the same updates over N documents.
 */
function floorState() {
  const docs = new Map();
  const LIMIT = 1000;
  const record = (prev, content, actor) => ({
    documentId: prev.documentId,
    topic: prev.topic,
    content,
    version: prev.version + 1,
    updatedBy: actor,
    updatedAt: new Date(),
  });
  return {
    async createDocumentState({ documentId, topic, content }) {
      const doc = { documentId, topic, content, version: 1, updatedBy: 'system', updatedAt: new Date() };
      docs.set(documentId, { doc, history: [{ version: 1, actor: 'system', at: doc.updatedAt, content }] });
      return doc;
    },
    async updateDocumentContent({ documentId, content, actor, expectedVersion }) {
      const entry = docs.get(documentId);
      if (entry === undefined) throw new Error(`no document \`${documentId}\``);
      if (entry.doc.version !== expectedVersion) throw new Error(`version conflict on \`${documentId}\``);
      const doc = record(entry.doc, content, actor);
      entry.doc = doc;
      entry.history.push({ version: doc.version, actor, at: doc.updatedAt, content });
      if (entry.history.length > 2 * LIMIT) entry.history.splice(0, entry.history.length - LIMIT);
      return doc;
    },
    async close() {},
  };
}

// Documents written round-robin through one StateManager, each update a compare-and-swap on the
// version the previous update of that document returned.
function documentsCurve(engine, points) {
  const floor = engine === 'floor';
  return {
    id: `state/documents/${engine}`,
    title: floor
      ? 'The floor: compare-and-swap updates round-robin over N documents in a plain Map with a bounded history each'
      : `Compare-and-swap updates through one StateManager, round-robin over N live documents, ${engine}`,
    xLabel: 'documents',
    unit: 'updates/s',
    higherIsBetter: true,
    redis: engine === 'redis',
    floor: engine === 'memory' ? 'state/documents/floor' : undefined,
    points,
    async setup(n, ctx) {
      const state = floor ? floorState() : await manager(engine, ctx);
      const ids = Array.from({ length: n }, (_, i) => `doc-${i}`);
      const versions = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        versions[i] = (await state.createDocumentState({ documentId: ids[i], topic: 'scale', content: LINES.join('\n') })).version;
      }
      const s = { state, ids, versions, next: 0 };
      // Warm-up: a full pass over every document (at least 20 000 updates), so the measured
      // runs see the steady state whatever the caches hold.
      await timed(() => update(s), 0, Math.max(n, 20_000));
      return s;
    },
    async measure(s) {
      const { n, seconds } = await timed(() => update(s), 1000, 2000);
      return n / seconds;
    },
    async teardown(s) {
      await s?.state.close();
    },
  };
}

async function update(s) {
  const i = s.next;
  s.next = i + 1 === s.ids.length ? 0 : i + 1;
  const doc = await s.state.updateDocumentContent({
    documentId: s.ids[i],
    content: CONTENTS[(s.versions[i] + i) & 63],
    actor: 'writer',
    expectedVersion: s.versions[i],
  });
  s.versions[i] = doc.version;
}

/** One document with `n` versions (all kept). */
async function deepDocument(engine, n, ctx) {
  const state = await manager(engine, ctx, { historyLimit: Math.max(1000, n) });
  let version = (await state.createDocumentState({ documentId: 'deep', topic: 'scale', content: LINES.join('\n') })).version;
  while (version < n) {
    version = (
      await state.updateDocumentContent({ documentId: 'deep', content: CONTENTS[version & 63], actor: 'writer', expectedVersion: version })
    ).version;
  }
  return state;
}

function versionReadCurve(engine, points) {
  return {
    id: `state/version-read/${engine}`,
    title: `getDocumentAtVersion(doc, 1) of a document with N versions, ${engine}`,
    xLabel: 'versions',
    unit: 'ms/read',
    higherIsBetter: false,
    redis: engine === 'redis',
    points,
    setup: (n, ctx) => deepDocument(engine, n, ctx),
    async measure(state) {
      const { n, seconds } = await timed(
        async () => {
          const doc = await state.getDocumentAtVersion('deep', 1);
          if (doc.version !== 1) throw new Error(`read version ${doc.version}, expected 1`);
        },
        300,
        5,
      );
      return (seconds * 1000) / n;
    },
    teardown: (state) => state?.close(),
  };
}

function historyCurve(engine, points) {
  return {
    id: `state/history/${engine}`,
    title: `getStateHistory(doc) (the default call) of a document with N history entries, ${engine}`,
    xLabel: 'entries',
    unit: 'ms/read',
    higherIsBetter: false,
    points,
    setup: (n, ctx) => deepDocument(engine, n, ctx),
    async measure(state) {
      const { n, seconds } = await timed(() => state.getStateHistory('deep'), 300, 5);
      return (seconds * 1000) / n;
    },
    teardown: (state) => state?.close(),
  };
}

export const curves = [
  documentsCurve('memory', [1, 1000, 2000, 10_000, 100_000]),
  documentsCurve('floor', [1, 1000, 2000, 10_000, 100_000]),
  documentsCurve('sqlite', [1, 1000, 2000, 10_000]),
  versionReadCurve('memory', [1000, 10_000, 100_000]),
  versionReadCurve('sqlite', [1000, 10_000, 100_000]),
  versionReadCurve('redis', [1000, 10_000]),
  historyCurve('memory', [1000, 10_000, 100_000]),
  historyCurve('sqlite', [1000, 10_000, 100_000]),
];
