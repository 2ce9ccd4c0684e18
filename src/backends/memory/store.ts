import { randomUUID } from 'node:crypto';
import { ClosedError } from '../../errors.js';
import type {
  CommitRequest,
  CommitResult,
  DocumentRecord,
  DocumentSummary,
  LockGrant,
  StateStore,
  WorkflowCommitResult,
  WorkflowRecord,
} from '../../state/store.js';
import type { ChangeEvent, StateChange } from '../../state/types.js';
import { checkCommitShape, ChangeFanout, CHANGE_FEED_RETENTION } from '../../state/store-kit.js';

interface StoredDocument {
  current: DocumentRecord;
  /** Kept versions, ascending (Map keeps insertion order), each with its history entry. */
  versions: Map<number, { record: DocumentRecord; change: StateChange }>;
}

interface StoredLock {
  token: string | null;
  fence: number;
  expiresAt: number;
}

/**
 * The in-process StateStore: Maps, with every value deep-copied on the way in and out so no
 * caller can change stored state by mutating an object it passed or got back. One instance is
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
  #changes: ChangeEvent[] = [];
  #revision = 0;
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
    return doc ? structuredClone(doc.current) : null;
  }

  /** Compare-and-swap commit of a version with its history entry (see the port). */
  async commitDocument(request: CommitRequest): Promise<CommitResult> {
    this.#open();
    checkCommitShape(request);
    const { document, change, expectedVersion, historyLimit, fence } = request;
    const existing = this.#documents.get(document.documentId);
    if (fence) {
      const lock = this.#locks.get(fence.key);
      if (!lock || lock.fence !== fence.token) return { ok: false, reason: 'fenced', current: existing ? structuredClone(existing.current) : null };
    }
    if (expectedVersion === null) {
      if (existing) return { ok: false, reason: 'exists', current: structuredClone(existing.current) };
    } else {
      if (!existing) return { ok: false, reason: 'not_found', current: null };
      if (existing.current.version !== expectedVersion) return { ok: false, reason: 'conflict', current: structuredClone(existing.current) };
    }
    const record = structuredClone(document);
    const doc: StoredDocument = existing ?? { current: record, versions: new Map() };
    doc.current = record;
    doc.versions.set(record.version, { record, change: structuredClone(change) });
    for (const version of doc.versions.keys()) {
      if (doc.versions.size <= historyLimit) break;
      doc.versions.delete(version);
    }
    this.#documents.set(record.documentId, doc);
    const revision = this.#append({
      kind: 'document',
      id: record.documentId,
      version: record.version,
      action: change.action,
      actor: change.actor,
      timestamp: change.timestamp,
    });
    return { ok: true, revision };
  }

  /** Kept history entries, oldest first. */
  async getHistory(documentId: string, options?: { limit?: number }): Promise<StateChange[]> {
    this.#open();
    const doc = this.#documents.get(documentId);
    if (!doc) return [];
    const kept = [...doc.versions.values()];
    const wanted = options?.limit !== undefined ? kept.slice(Math.max(0, kept.length - options.limit)) : kept;
    return wanted.map((v) => structuredClone(v.change));
  }

  /** A kept version, or null. */
  async getVersion(documentId: string, version: number): Promise<DocumentRecord | null> {
    this.#open();
    const kept = this.#documents.get(documentId)?.versions.get(version);
    return kept ? structuredClone(kept.record) : null;
  }

  /** The oldest kept version, or null when the document does not exist. */
  async oldestVersion(documentId: string): Promise<number | null> {
    this.#open();
    const doc = this.#documents.get(documentId);
    if (!doc) return null;
    const first = doc.versions.keys().next();
    return first.done ? doc.current.version : first.value;
  }

  /** Every document's id, version and last update. */
  async listDocuments(): Promise<DocumentSummary[]> {
    this.#open();
    return [...this.#documents.values()].map(({ current }) => ({
      documentId: current.documentId,
      version: current.version,
      updatedAt: new Date(current.updatedAt),
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
    this.#append({
      kind: 'workflow',
      id: workflow.workflowId,
      version: revision,
      action: expectedRevision === null ? 'workflow_create' : 'workflow_update',
      timestamp: new Date(stored.updatedAt),
    });
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
    return this.#since(afterRevision, limit).map((e) => structuredClone(e));
  }

  /** The highest revision so far. */
  async currentRevision(): Promise<number> {
    this.#open();
    return this.#revision;
  }

  /** Delivers change events in revision order, from `afterRevision` (default: now). */
  async watch(handler: (event: ChangeEvent) => void, options?: { afterRevision?: number }): Promise<() => Promise<void>> {
    this.#open();
    const after = options?.afterRevision ?? this.#revision;
    const stop = this.#fanout.add(handler, after);
    const backlog = this.#since(after, Number.MAX_SAFE_INTEGER);
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
    for (const doc of this.#documents.values()) sumOfVersions += doc.current.version;
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

  #append(event: Omit<ChangeEvent, 'revision'>): number {
    const full: ChangeEvent = { ...event, revision: ++this.#revision };
    this.#changes.push(full);
    if (this.#changes.length > CHANGE_FEED_RETENTION * 1.1) this.#changes.splice(0, this.#changes.length - CHANGE_FEED_RETENTION);
    this.#fanout.deliver([full]);
    return full.revision;
  }

  #since(afterRevision: number, limit: number): ChangeEvent[] {
    // Revisions are dense in the kept window, so the start is found by arithmetic.
    const first = this.#changes[0];
    if (!first) return [];
    const start = Math.max(0, afterRevision + 1 - first.revision);
    return this.#changes.slice(start, start + limit);
  }
}
