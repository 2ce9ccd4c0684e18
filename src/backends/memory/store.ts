import { randomUUID } from 'node:crypto';
import { ClosedError } from '../../errors.js';
import type {
  CommitRequest,
  CommitResult,
  DocumentRecord,
  DocumentSummary,
  HistoryRange,
  LockGrant,
  StateStore,
  WorkflowCommitResult,
  WorkflowRecord,
} from '../../state/store.js';
import type { ChangeEvent, StateChange } from '../../state/types.js';
import { checkCommitShape, ChangeFanout, CHANGE_FEED_RETENTION, historySpan } from '../../state/store-kit.js';
import { copyJson, isFrozenJson, sameJson, sealChange } from '../../state/copy.js';

/**
 * Slots per kept version in `StoredDocument.kept`: its history entry, content, metadata, and
 * update time. A kept version is slots in its document's array, not an object of its own: at
 * 100 000 live documents every kept version outlives the young generation and is copied by the
 * scavenger, so each object less per version is less of that work (bench/NOTES.md, issue 25
 * round 4). The history entry is kept sealed (frozen, with an immutable timestamp: see
 * `sealChange`), so `getHistory` hands out the entry itself and reading a window allocates
 * nothing per entry; the manager's entries come sealed and are kept as they are. Metadata is a
 * private deep copy, shared with the previous version when equal. The update time slot is
 * undefined when it is the entry's timestamp, as in every commit the manager makes.
 */
const SLOTS = 4;
const CHANGE = 0;
const CONTENT = 1;
const METADATA = 2;
const UPDATED_AT = 3;
type Slot = StateChange | string | Record<string, unknown> | Date | undefined;

interface StoredDocument {
  documentId: string;
  createdAt: number;
  /** The current version. */
  version: number;
  /** The oldest kept version. */
  oldest: number;
  /**
   * Kept versions, oldest first and contiguous (every commit adds the next version), `SLOTS`
   * slots each from `head`. Compaction moves `head` forward and slices the array now and then,
   * so a commit costs O(1) amortised and a version is found by arithmetic.
   */
  kept: Slot[];
  head: number;
}

/** The first slot of kept version `version` of `doc`, or -1 when not kept. */
function slotOf(doc: StoredDocument, version: number): number {
  return version >= doc.oldest && version <= doc.version ? doc.head + (version - doc.oldest) * SLOTS : -1;
}

function changeAt(doc: StoredDocument, slot: number): StateChange {
  return doc.kept[slot + CHANGE] as StateChange;
}

function metadataAt(doc: StoredDocument, slot: number): Record<string, unknown> {
  return doc.kept[slot + METADATA] as Record<string, unknown>;
}

function updatedAt(doc: StoredDocument, slot: number): Date {
  return (doc.kept[slot + UPDATED_AT] as Date | undefined) ?? changeAt(doc, slot).timestamp;
}

/**
 * What a new version keeps as its metadata, given the previous version's (`previous`). Frozen
 * metadata (the manager's: see `freezeJson`) is kept as it is, so a content update, which
 * carries the metadata over, passes the very object kept and costs an identity check: at 100 000
 * documents a deep comparison touched six objects of the document's, each a cache miss
 * (bench/NOTES.md, issue 25 round 7). Other metadata is copied, or shares the previous version's
 * copy when equal. Nothing kept is handed out: reads copy it.
 */
function keptMetadata(previous: Record<string, unknown> | undefined, metadata: Record<string, unknown>): Record<string, unknown> {
  // Identical only when `previous` was kept as it is, so frozen: a copy of the store's own is never handed out.
  if (metadata === previous || isFrozenJson(metadata)) return metadata;
  return previous !== undefined && sameJson(previous, metadata) ? previous : copyJson(metadata);
}

/** The kept version at `slot` as a new record. */
function toRecord(doc: StoredDocument, slot: number): DocumentRecord {
  return {
    documentId: doc.documentId,
    version: changeAt(doc, slot).version,
    content: doc.kept[slot + CONTENT] as string,
    metadata: copyJson(metadataAt(doc, slot)),
    createdAt: new Date(doc.createdAt),
    updatedAt: new Date(updatedAt(doc, slot).getTime()),
  };
}

/** The current version as a new record. */
function currentRecord(doc: StoredDocument): DocumentRecord {
  return toRecord(doc, doc.kept.length - SLOTS);
}

/** One page of the change feed's ring: parallel columns, numbers in typed arrays. */
interface FeedPage {
  kinds: Array<ChangeEvent['kind']>;
  ids: string[];
  actions: Array<ChangeEvent['action']>;
  actors: Array<string | undefined>;
  versions: Float64Array;
  times: Float64Array;
}

/** Events per page of the feed ring. */
const FEED_PAGE = 4096;

/**
 * The change feed: the last `capacity` events in a ring of parallel columns, so keeping an event
 * allocates nothing (a commit-heavy store would otherwise keep 100 000 small objects alive for
 * the garbage collector to trace). Revisions are dense: revision r lives at slot
 * (r - 1) % capacity. The ring is made of fixed pages allocated as the feed first reaches them:
 * a store with few changes stays small, and filling the ring never copies a column (growing
 * six 100 000-entry arrays by doubling slowed a store's first 100 000 commits: bench/NOTES.md,
 * round 7).
 */
class FeedRing {
  readonly #capacity: number;
  readonly #pages: FeedPage[] = [];
  /** The newest revision (0 when empty). */
  last = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Appends the next revision's event; returns its revision. */
  push(
    kind: ChangeEvent['kind'],
    id: string,
    version: number,
    action: ChangeEvent['action'],
    actor: string | undefined,
    time: number,
  ): number {
    const slot = this.last % this.#capacity;
    const page = this.#pages[(slot / FEED_PAGE) | 0] ?? this.#newPage();
    const i = slot % FEED_PAGE;
    page.kinds[i] = kind;
    page.ids[i] = id;
    page.versions[i] = version;
    page.actions[i] = action;
    page.actors[i] = actor;
    page.times[i] = time;
    return ++this.last;
  }

  #newPage(): FeedPage {
    const size = Math.min(FEED_PAGE, this.#capacity - this.#pages.length * FEED_PAGE);
    const page: FeedPage = {
      kinds: new Array<ChangeEvent['kind']>(size).fill('document'),
      ids: new Array<string>(size).fill(''),
      actions: new Array<ChangeEvent['action']>(size).fill('create'),
      actors: new Array<string | undefined>(size).fill(undefined),
      versions: new Float64Array(size),
      times: new Float64Array(size),
    };
    this.#pages.push(page);
    return page;
  }

  /** The event of a kept revision, as a new object. */
  event(revision: number): ChangeEvent {
    const slot = (revision - 1) % this.#capacity;
    const page = this.#pages[(slot / FEED_PAGE) | 0]!;
    const i = slot % FEED_PAGE;
    const kind = page.kinds[i]!;
    const id = page.ids[i]!;
    const version = page.versions[i]!;
    const action = page.actions[i]!;
    const timestamp = new Date(page.times[i]!);
    const actor = page.actors[i];
    // One literal of the final shape: an `actor` added afterwards went into a second object.
    return actor === undefined
      ? { revision, kind, id, version, action, timestamp }
      : { revision, kind, id, version, action, timestamp, actor };
  }

  /** Up to `limit` kept events after `afterRevision`, oldest first, as new objects. */
  since(afterRevision: number, limit: number): ChangeEvent[] {
    const from = Math.max(afterRevision + 1, this.last - this.#capacity + 1, 1);
    const to = Math.min(this.last, from + limit - 1);
    const out: ChangeEvent[] = [];
    for (let r = from; r <= to; r++) out.push(this.event(r));
    return out;
  }
}

interface StoredLock {
  token: string | null;
  fence: number;
  expiresAt: number;
}

/**
 * The in-process StateStore: Maps, with every value deep-copied on the way in and out (by the
 * small copiers of `state/copy.ts`, much cheaper than `structuredClone`) so no caller can
 * change stored state by mutating an object it passed or got back. One instance is
 * one isolated space; several StateManagers may share it (that is how tests play "processes").
 *
 * @example
 * const store = new MemoryStore();
 * const a = new StateManager({ store }), b = new StateManager({ store });
 */
export class MemoryStore implements StateStore {
  /** Always `memory`. */
  readonly kind = 'memory';
  /** Always `memory://`. */
  readonly url = 'memory://';

  #documents = new Map<string, StoredDocument>();
  #workflows = new Map<string, WorkflowRecord>();
  #locks = new Map<string, StoredLock>();
  #feed = new FeedRing(CHANGE_FEED_RETENTION);
  #fanout = new ChangeFanout();
  #closed = false;

  /** Nothing to open; fails only after `close()`. */
  async connect(): Promise<void> {
    this.#open();
  }

  /** The current version of a document, or null. */
  async getDocument(documentId: string): Promise<DocumentRecord | null> {
    this.#open();
    const doc = this.#documents.get(documentId);
    return doc ? currentRecord(doc) : null;
  }

  /** Compare-and-swap commit of a version with its history entry (see the port). */
  async commitDocument(request: CommitRequest): Promise<CommitResult> {
    this.#open();
    checkCommitShape(request);
    const { document, change, expectedVersion, historyLimit, fence } = request;
    const existing = this.#documents.get(document.documentId);
    if (fence) {
      const lock = this.#locks.get(fence.key);
      if (!lock || lock.fence !== fence.token) return { ok: false, reason: 'fenced', current: existing ? currentRecord(existing) : null };
    }
    if (expectedVersion === null) {
      if (existing) return { ok: false, reason: 'exists', current: currentRecord(existing) };
    } else {
      if (!existing) return { ok: false, reason: 'not_found', current: null };
      if (existing.version !== expectedVersion) return { ok: false, reason: 'conflict', current: currentRecord(existing) };
    }
    const doc: StoredDocument = existing ?? {
      documentId: document.documentId,
      createdAt: document.createdAt.getTime(),
      version: 0,
      oldest: document.version,
      kept: [],
      head: 0,
    };
    const timestamp = change.timestamp.getTime();
    const previous = existing ? metadataAt(existing, existing.kept.length - SLOTS) : undefined;
    const sealed = sealChange(change);
    const updated = document.updatedAt.getTime();
    doc.kept.push(
      sealed,
      document.content,
      keptMetadata(previous, document.metadata),
      updated === timestamp ? undefined : new Date(updated),
    );
    doc.version = document.version;
    const kept = doc.kept;
    while (doc.version - doc.oldest >= historyLimit) {
      for (let i = doc.head; i < doc.head + SLOTS; i++) kept[i] = undefined;
      doc.head += SLOTS;
      doc.oldest++;
    }
    if (doc.head >= 64 * SLOTS && doc.head * 2 >= kept.length) {
      doc.kept = kept.slice(doc.head);
      doc.head = 0;
    }
    if (!existing) this.#documents.set(doc.documentId, doc);
    const revision = this.#append('document', doc.documentId, document.version, change.action, change.actor, timestamp);
    return { ok: true, revision };
  }

  /** Kept history entries in a range, oldest first (see the port): found by arithmetic, not a walk; sealed, so shared. */
  async getHistory(documentId: string, options?: HistoryRange): Promise<StateChange[]> {
    this.#open();
    const doc = this.#documents.get(documentId);
    if (!doc) return [];
    const { from, to } = historySpan(doc.oldest, doc.version, options);
    const out: StateChange[] = [];
    for (let v = from; v <= to; v++) out.push(changeAt(doc, slotOf(doc, v)));
    return out;
  }

  /** A kept version, or null. */
  async getVersion(documentId: string, version: number): Promise<DocumentRecord | null> {
    this.#open();
    const doc = this.#documents.get(documentId);
    const slot = doc ? slotOf(doc, version) : -1;
    return doc && slot >= 0 ? toRecord(doc, slot) : null;
  }

  /** The oldest kept version, or null when the document does not exist. */
  async oldestVersion(documentId: string): Promise<number | null> {
    this.#open();
    const doc = this.#documents.get(documentId);
    return doc ? doc.oldest : null;
  }

  /** Every document's id, version and last update. */
  async listDocuments(): Promise<DocumentSummary[]> {
    this.#open();
    return [...this.#documents.values()].map((doc) => ({
      documentId: doc.documentId,
      version: doc.version,
      updatedAt: new Date(updatedAt(doc, doc.kept.length - SLOTS).getTime()),
    }));
  }

  /** A workflow with its CAS revision, or null. */
  async getWorkflow(workflowId: string): Promise<WorkflowRecord | null> {
    this.#open();
    const wf = this.#workflows.get(workflowId);
    return wf ? structuredClone(wf) : null;
  }

  /** Compare-and-swap on the workflow revision (null = create). */
  async commitWorkflow(workflow: WorkflowRecord, expectedRevision: number | null): Promise<WorkflowCommitResult> {
    this.#open();
    const existing = this.#workflows.get(workflow.workflowId);
    const actual = existing?.revision ?? null;
    if (actual !== expectedRevision) return { ok: false, current: existing ? structuredClone(existing) : null };
    const revision = (expectedRevision ?? 0) + 1;
    const stored = { ...structuredClone(workflow), revision };
    this.#workflows.set(workflow.workflowId, stored);
    this.#append(
      'workflow',
      workflow.workflowId,
      revision,
      expectedRevision === null ? 'workflow_create' : 'workflow_update',
      undefined,
      stored.updatedAt.getTime(),
    );
    return { ok: true, revision };
  }

  /** Every workflow. */
  async listWorkflows(): Promise<WorkflowRecord[]> {
    this.#open();
    return [...this.#workflows.values()].map((wf) => structuredClone(wf));
  }

  /** Change events after `afterRevision` (the last `CHANGE_FEED_RETENTION` are kept). */
  async changesSince(afterRevision: number, limit = 1000): Promise<ChangeEvent[]> {
    this.#open();
    return this.#feed.since(afterRevision, limit);
  }

  /** The highest revision so far. */
  async currentRevision(): Promise<number> {
    this.#open();
    return this.#feed.last;
  }

  /** Delivers change events in revision order, from `afterRevision` (default: now). */
  async watch(handler: (event: ChangeEvent) => void, options?: { afterRevision?: number }): Promise<() => Promise<void>> {
    this.#open();
    const after = options?.afterRevision ?? this.#feed.last;
    const stop = this.#fanout.add(handler, after);
    const backlog = this.#feed.since(after, Number.MAX_SAFE_INTEGER);
    this.#fanout.deliver(backlog);
    return async () => stop();
  }

  /** Takes the lease when it is free or expired; the fence grows with every acquisition. */
  async tryAcquireLock(key: string, ttlMs: number): Promise<LockGrant | null> {
    this.#open();
    const now = Date.now();
    const lock = this.#locks.get(key);
    if (lock && lock.token !== null && lock.expiresAt > now) return null;
    const grant: LockGrant = { token: randomUUID(), fence: (lock?.fence ?? 0) + 1, expiresAt: now + ttlMs };
    this.#locks.set(key, { token: grant.token, fence: grant.fence, expiresAt: grant.expiresAt });
    return grant;
  }

  /** Extends the lease while `token` still owns it. */
  async renewLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    this.#open();
    const lock = this.#locks.get(key);
    if (!lock || lock.token !== token) return false;
    lock.expiresAt = Date.now() + ttlMs;
    return true;
  }

  /** Frees the lease if `token` still owns it (the fence number is kept). */
  async releaseLock(key: string, token: string): Promise<void> {
    this.#open();
    const lock = this.#locks.get(key);
    if (lock && lock.token === token) {
      lock.token = null;
      lock.expiresAt = 0;
    }
  }

  /** Counts for metrics. `totalChanges` = every document version and workflow write ever committed. */
  async stats(): Promise<{ documents: number; workflows: number; totalChanges: number; sumOfVersions: number }> {
    this.#open();
    let sumOfVersions = 0;
    for (const doc of this.#documents.values()) sumOfVersions += doc.version;
    let workflowWrites = 0;
    for (const wf of this.#workflows.values()) workflowWrites += wf.revision;
    return {
      documents: this.#documents.size,
      workflows: this.#workflows.size,
      totalChanges: sumOfVersions + workflowWrites,
      sumOfVersions,
    };
  }

  /** Stops watchers; later calls fail with `ClosedError`. The data is dropped with the instance. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#fanout.clear();
  }

  #open(): void {
    if (this.#closed) throw new ClosedError('memory store');
  }

  #append(
    kind: ChangeEvent['kind'],
    id: string,
    version: number,
    action: ChangeEvent['action'],
    actor: string | undefined,
    time: number,
  ): number {
    const revision = this.#feed.push(kind, id, version, action, actor, time);
    if (this.#fanout.size > 0) this.#fanout.deliverFresh(this.#feed.event(revision));
    return revision;
  }
}
