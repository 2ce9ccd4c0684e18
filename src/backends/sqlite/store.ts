import { randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { ClosedError, ConcordError, TransportError, ValidationError } from '../../errors.js';
import { CHANGE_FEED_RETENTION, ChangeFanout, checkCommitShape } from '../../state/store-kit.js';
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
import type { ChangeAction, ChangeEvent, StateChange } from '../../state/types.js';
import { parseBackendUrl } from '../url.js';
import { migrate } from './schema.js';
import { readText } from '../text.js';
import { changeEvent, toChange, toDocument, toWorkflow, type ChangeRow, type DocumentRow, type HistoryRow } from './rows.js';

/** How a SqliteStore opens its file. */
export interface SqliteStoreOptions {
  /** Path of the database file (relative to the working directory), or `:memory:`. */
  filename: string;
  /** Scopes every row to this namespace so several apps or test runs share one file. */
  namespace?: string;
  /**
   * `full` (default): a commit is on disk when its Promise resolves, surviving power loss, at
   * the price of an fsync per write. `normal`: WAL without the per-commit fsync; survives a
   * process crash (SIGKILL) but the last commits can be lost on power failure. Neither ever
   * corrupts the file or separates a version from its history entry.
   */
  synchronous?: 'full' | 'normal';
  /** How long SQLite itself waits (blocking) for another writer before reporting busy. Default 250. */
  busyTimeoutMs?: number;
  /** How long a busy write keeps being retried (without blocking the event loop) before failing. Default 30000. */
  busyRetryMs?: number;
  /** How often watchers poll the change feed for other processes' writes. Default 50. */
  pollIntervalMs?: number;
  /**
   * Permission bits of a database file this store creates, default `0o600` (owner only); the
   * process umask still removes bits from it, and SQLite gives the `-wal` and `-shm` files the
   * database file's mode. An existing file keeps its mode. Must include owner read and write.
   */
  mode?: number;
}

type Statements = ReturnType<typeof prepare>;

interface AppendedChange {
  revision: number;
  kind: string;
  id: string;
  version: number;
  action: string;
  actor: string | null;
  changedAt: number;
}

/** The write transactions, each run with `BEGIN IMMEDIATE`. */
interface Transactions {
  commit: (request: CommitRequest) => CommitResult;
  commitWorkflow: (workflow: WorkflowRecord, expected: number | null) => WorkflowCommitResult;
  acquire: (key: string, ttlMs: number) => LockGrant | null;
}

/** Compacted version rows are deleted in batches of about this many (see `#commitInTx`). */
const COMPACT_BATCH = 64;

/** Stores of this process per database file, so a commit wakes same-process watchers at once. */
const neighbours = new Map<string, Set<SqliteStore>>();

/**
 * Parses `sqlite:./path.db`, `sqlite:/abs/path.db`, `sqlite:///abs/path.db` or `sqlite::memory:`,
 * with optional `?namespace=`, `&synchronous=full|normal`, `&busyTimeoutMs=`, `&pollIntervalMs=`,
 * `&mode=640` (octal permission bits of a file it creates, default 600).
 */
export function parseSqliteUrl(url: string): SqliteStoreOptions {
  const parsed = parseBackendUrl(url, ['sqlite:./path.db']);
  const q = url.indexOf('?');
  let file = url.slice('sqlite:'.length, q >= 0 ? q : undefined);
  if (file.startsWith('//')) file = file.slice(2);
  if (file.length === 0)
    throw new ValidationError(`SQLite URL must name a file, e.g. \`sqlite:./state.db\`, got \`${url}\``, { field: 'url' });
  const options: SqliteStoreOptions = { filename: decodeURIComponent(file) };
  if (parsed.namespace !== undefined) options.namespace = parsed.namespace;
  const sync = parsed.params.get('synchronous');
  if (sync !== null) {
    if (sync !== 'full' && sync !== 'normal')
      throw new ValidationError(`synchronous must be \`full\` or \`normal\`, got \`${sync}\``, { field: 'synchronous' });
    options.synchronous = sync;
  }
  const mode = parsed.params.get('mode');
  if (mode !== null) {
    if (!/^(0o?)?[0-7]{3}$/.test(mode))
      throw new ValidationError(`mode must be octal permission bits such as \`600\` or \`0640\`, got \`${mode}\``, { field: 'mode' });
    options.mode = parseInt(mode.replace(/^0o?/, ''), 8);
  }
  for (const key of ['busyTimeoutMs', 'busyRetryMs', 'pollIntervalMs'] as const) {
    const raw = parsed.params.get(key);
    if (raw === null) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new ValidationError(`${key} must be a non-negative integer, got \`${raw}\``, { field: key });
    options[key] = n;
  }
  return options;
}

function prepare(db: BetterSqlite3.Database) {
  return {
    getDocument: db.prepare<[string, string], DocumentRow>(
      `SELECT CAST(d.document_id AS BLOB) AS document_id, d.version, CAST(v.content AS BLOB) AS content, v.metadata, d.created_at, v.updated_at
         FROM documents d JOIN versions v ON v.ns = d.ns AND v.document_id = d.document_id AND v.version = d.version
        WHERE d.ns = ? AND d.document_id = ?`,
    ),
    getHead: db.prepare<[string, string], { version: number; oldest_version: number; created_at: number }>(
      'SELECT version, oldest_version, created_at FROM documents WHERE ns = ? AND document_id = ?',
    ),
    getVersion: db.prepare<[string, string, number], DocumentRow>(
      `SELECT CAST(v.document_id AS BLOB) AS document_id, v.version, CAST(v.content AS BLOB) AS content, v.metadata, d.created_at, v.updated_at
         FROM versions v JOIN documents d ON d.ns = v.ns AND d.document_id = v.document_id
        WHERE v.ns = ? AND v.document_id = ? AND v.version = ? AND v.version >= d.oldest_version`,
    ),
    insertVersion: db.prepare(
      `INSERT INTO versions (ns, document_id, version, content, metadata, updated_at, actor, action, summary, changed_at)
       VALUES (@ns, @documentId, @version, @content, @metadata, @updatedAt, @actor, @action, @summary, @changedAt)`,
    ),
    insertDocument: db.prepare(
      `INSERT INTO documents (ns, document_id, version, oldest_version, created_at, updated_at)
       VALUES (@ns, @documentId, @version, @version, @createdAt, @updatedAt)`,
    ),
    updateDocument: db.prepare(
      `UPDATE documents SET version = @version, oldest_version = @oldest, updated_at = @updatedAt
        WHERE ns = @ns AND document_id = @documentId`,
    ),
    compact: db.prepare('DELETE FROM versions WHERE ns = ? AND document_id = ? AND version < ?'),
    // A range of kept entries (version > after AND version < before), newest first: a range
    // scan of the primary key that reads only the rows it returns.
    history: db.prepare<[string, string, number, number, number], HistoryRow>(
      `SELECT v.version, CAST(v.actor AS BLOB) AS actor, v.action, CAST(v.summary AS BLOB) AS summary, v.changed_at
         FROM versions v JOIN documents d ON d.ns = v.ns AND d.document_id = v.document_id
        WHERE v.ns = ? AND v.document_id = ? AND v.version >= d.oldest_version AND v.version > ? AND v.version < ?
        ORDER BY v.version DESC LIMIT ?`,
    ),
    // The same range oldest first: the page right after `after`.
    historyAfter: db.prepare<[string, string, number, number, number], HistoryRow>(
      `SELECT v.version, CAST(v.actor AS BLOB) AS actor, v.action, CAST(v.summary AS BLOB) AS summary, v.changed_at
         FROM versions v JOIN documents d ON d.ns = v.ns AND d.document_id = v.document_id
        WHERE v.ns = ? AND v.document_id = ? AND v.version >= d.oldest_version AND v.version > ? AND v.version < ?
        ORDER BY v.version ASC LIMIT ?`,
    ),
    listDocuments: db.prepare<[string], { document_id: Buffer; version: number; updated_at: number }>(
      'SELECT CAST(document_id AS BLOB) AS document_id, version, updated_at FROM documents WHERE ns = ? ORDER BY document_id',
    ),
    getWorkflow: db.prepare<[string, string], { revision: number; body: string }>(
      'SELECT revision, body FROM workflows WHERE ns = ? AND workflow_id = ?',
    ),
    insertWorkflow: db.prepare('INSERT INTO workflows (ns, workflow_id, revision, body) VALUES (?, ?, ?, ?)'),
    updateWorkflow: db.prepare('UPDATE workflows SET revision = ?, body = ? WHERE ns = ? AND workflow_id = ? AND revision = ?'),
    listWorkflows: db.prepare<[string], { revision: number; body: string }>(
      'SELECT revision, body FROM workflows WHERE ns = ? ORDER BY workflow_id',
    ),
    appendChange: db.prepare(
      `INSERT INTO changes (ns, revision, kind, id, version, action, actor, changed_at)
       VALUES (@ns, @revision, @kind, @id, @version, @action, @actor, @changedAt)`,
    ),
    changesSince: db.prepare<[string, number, number], ChangeRow>(
      'SELECT revision, kind, CAST(id AS BLOB) AS id, version, action, CAST(actor AS BLOB) AS actor, changed_at FROM changes WHERE ns = ? AND revision > ? ORDER BY revision LIMIT ?',
    ),
    currentRevision: db.prepare<[string], { r: number | null }>('SELECT MAX(revision) AS r FROM changes WHERE ns = ?'),
    trimChanges: db.prepare('DELETE FROM changes WHERE ns = ? AND revision <= ?'),
    getLock: db.prepare<[string, string], { token: string | null; fence: number; expires_at: number }>(
      'SELECT token, fence, expires_at FROM locks WHERE ns = ? AND key = ?',
    ),
    putLock: db.prepare(
      `INSERT INTO locks (ns, key, token, fence, expires_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (ns, key) DO UPDATE SET token = excluded.token, fence = excluded.fence, expires_at = excluded.expires_at`,
    ),
    renewLock: db.prepare('UPDATE locks SET expires_at = ? WHERE ns = ? AND key = ? AND token = ?'),
    releaseLock: db.prepare('UPDATE locks SET token = NULL, expires_at = 0 WHERE ns = ? AND key = ? AND token = ?'),
    documentStats: db.prepare<[string], { n: number; s: number }>(
      'SELECT COUNT(*) AS n, COALESCE(SUM(version), 0) AS s FROM documents WHERE ns = ?',
    ),
    workflowStats: db.prepare<[string], { n: number; s: number }>(
      'SELECT COUNT(*) AS n, COALESCE(SUM(revision), 0) AS s FROM workflows WHERE ns = ?',
    ),
  };
}

/** The `mode` option: owner read+write at least, no bits beyond 0o777. */
function fileMode(mode: unknown): number {
  if (mode === undefined) return 0o600;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o777 || (mode & 0o600) !== 0o600) {
    const got = typeof mode === 'number' && Number.isInteger(mode) && mode >= 0 ? `0o${mode.toString(8)}` : String(mode);
    throw new ValidationError(`mode must be permission bits 0o600..0o777 including owner read and write, got \`${got}\``, {
      field: 'mode',
    });
  }
  return mode;
}

/**
 * Creates the database file with `mode` (minus the umask) unless it exists. SQLite would create
 * it 0644; it creates `-wal` and `-shm` with the database file's mode, so those follow. An empty
 * file is an empty database. Another process creating it at the same moment is fine (EEXIST).
 */
function createFile(file: string, mode: number): void {
  try {
    closeSync(openSync(file, 'wx', mode));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

/**
 * The durable embedded StateStore (`concord-agents/sqlite`), on better-sqlite3.
 *
 * - WAL journal, so readers never wait for the writer; every write is one `BEGIN IMMEDIATE`
 *   transaction (the write lock is taken up front, so two processes never deadlock upgrading).
 * - A version and its history entry are one row: no version can exist without its entry.
 * - Locks are rows of the `locks` table, so they hold between processes sharing the file.
 * - `watch` polls the change feed every `pollIntervalMs` (unref'd timer) to see other
 *   processes' writes; writes through any store of this process wake watchers at once.
 * - Busy files are retried with back-off up to `busyRetryMs`, then `TransportError`.
 *
 * @example
 * import { SqliteStore } from 'concord-agents/sqlite';
 * const state = new StateManager({ store: new SqliteStore({ filename: './state.db' }) });
 * // or: new StateManager({ store: 'sqlite:./state.db' })
 */
export class SqliteStore implements StateStore {
  /** Always `sqlite`. */
  readonly kind = 'sqlite';
  /** The URL this store stands for. */
  readonly url: string;

  #options: Required<Omit<SqliteStoreOptions, 'namespace'>> & { namespace: string };
  #file: string;
  #db: BetterSqlite3.Database | null = null;
  #stmts: Statements | null = null;
  #connecting: Promise<void> | null = null;
  #closed = false;
  #fanout = new ChangeFanout();
  #timer: NodeJS.Timeout | null = null;
  #polling = false;
  #pollAgain = false;
  #tx: Transactions | null = null;
  /** The change-feed event the last write transaction appended (read right after it, synchronously). */
  #appended: AppendedChange | null = null;

  /** Opens nothing yet: `connect()` (which the StateManager calls) opens and migrates the file. */
  constructor(options: SqliteStoreOptions) {
    if (!options || typeof options.filename !== 'string' || options.filename.length === 0) {
      throw new ValidationError('SqliteStore needs { filename }, e.g. { filename: "./state.db" }', { field: 'filename' });
    }
    this.#options = {
      filename: options.filename,
      namespace: options.namespace ?? '',
      synchronous: options.synchronous ?? 'full',
      busyTimeoutMs: options.busyTimeoutMs ?? 250,
      busyRetryMs: options.busyRetryMs ?? 30_000,
      pollIntervalMs: options.pollIntervalMs ?? 50,
      mode: fileMode(options.mode),
    };
    this.#file = options.filename === ':memory:' ? ':memory:' : path.resolve(options.filename);
    this.url = `sqlite:${options.filename}` + (options.namespace ? `?namespace=${options.namespace}` : '');
  }

  /** The absolute path of the database file. */
  get filename(): string {
    return this.#file;
  }

  /** Opens the file, sets WAL and durability pragmas, and migrates the schema. Idempotent. */
  async connect(): Promise<void> {
    if (this.#closed) throw new ClosedError(`SQLite store ${this.url}`);
    if (this.#db) return;
    this.#connecting ??= this.#open().catch((err: unknown) => {
      this.#connecting = null;
      throw err;
    });
    return this.#connecting;
  }

  async #open(): Promise<void> {
    let Database: typeof BetterSqlite3;
    try {
      Database = (await import('better-sqlite3')).default;
    } catch (err) {
      throw new TransportError(this.url, 'concord-agents/sqlite needs the better-sqlite3 package: npm install better-sqlite3', {
        cause: err,
      });
    }
    let db: BetterSqlite3.Database;
    try {
      if (this.#file !== ':memory:') createFile(this.#file, this.#options.mode);
      db = new Database(this.#file);
    } catch (err) {
      throw new TransportError(this.url, `cannot open SQLite database: ${(err as Error).message}`, { cause: err });
    }
    try {
      db.pragma(`busy_timeout = ${this.#options.busyTimeoutMs}`);
      await this.#retryBusy(() => db.pragma('journal_mode = WAL'));
      db.pragma(`synchronous = ${this.#options.synchronous.toUpperCase()}`);
      await this.#retryBusy(() => migrate(db, this.url));
    } catch (err) {
      db.close();
      throw err instanceof ConcordError
        ? err
        : new TransportError(this.url, `cannot prepare SQLite database: ${(err as Error).message}`, { cause: err });
    }
    if (this.#closed) {
      db.close();
      throw new ClosedError(`SQLite store ${this.url}`);
    }
    this.#db = db;
    this.#stmts = prepare(db);
    this.#tx = {
      commit: db.transaction((request: CommitRequest) => this.#commitInTx(request)).immediate,
      commitWorkflow: db.transaction((workflow: WorkflowRecord, expected: number | null) => this.#commitWorkflowInTx(workflow, expected))
        .immediate,
      acquire: db.transaction((key: string, ttlMs: number) => this.#acquireInTx(key, ttlMs)).immediate,
    };
    if (this.#file !== ':memory:') {
      let set = neighbours.get(this.#file);
      if (!set) neighbours.set(this.#file, (set = new Set()));
      set.add(this);
    }
  }

  /** The current version of a document, or null. */
  async getDocument(documentId: string): Promise<DocumentRecord | null> {
    const { s } = await this.#ready();
    const row = await this.#retryBusy(() => s.getDocument.get(this.#options.namespace, documentId));
    return row ? toDocument(row) : null;
  }

  /** Compare-and-swap commit of a version with its history entry, in one `BEGIN IMMEDIATE` transaction. */
  async commitDocument(request: CommitRequest): Promise<CommitResult> {
    const { tx } = await this.#ready();
    checkCommitShape(request);
    const [result, event] = await this.#retryBusy(() => [tx.commit(request), this.#appended] as const);
    if (result.ok) this.#wakeNeighbours(event);
    return result;
  }

  #commitInTx(request: CommitRequest): CommitResult {
    const s = this.#statements();
    const ns = this.#options.namespace;
    const { document, change, expectedVersion, historyLimit, fence } = request;
    const head = s.getHead.get(ns, document.documentId);
    const current = (): DocumentRecord | null => {
      const row = s.getDocument.get(ns, document.documentId);
      return row ? toDocument(row) : null;
    };
    if (fence) {
      const lock = s.getLock.get(ns, fence.key);
      if (!lock || lock.fence !== fence.token) return { ok: false, reason: 'fenced', current: current() };
    }
    if (expectedVersion === null) {
      if (head) return { ok: false, reason: 'exists', current: current() };
    } else {
      if (!head) return { ok: false, reason: 'not_found', current: null };
      if (head.version !== expectedVersion) return { ok: false, reason: 'conflict', current: current() };
    }
    s.insertVersion.run({
      ns,
      documentId: document.documentId,
      version: document.version,
      content: document.content,
      metadata: JSON.stringify(document.metadata),
      updatedAt: document.updatedAt.getTime(),
      actor: change.actor,
      action: change.action,
      summary: change.summary ?? null,
      changedAt: change.timestamp.getTime(),
    });
    if (head) {
      const oldest = Math.max(head.oldest_version, document.version - historyLimit + 1);
      // Versions below `oldest_version` are compacted: every read is bounded by it. Their rows go
      // in batches, when `oldest` crosses a multiple of COMPACT_BATCH, so that a commit does not
      // also rewrite the page of the oldest row (one more page written and synced every time).
      if (Math.floor(oldest / COMPACT_BATCH) > Math.floor(head.oldest_version / COMPACT_BATCH))
        s.compact.run(ns, document.documentId, oldest);
      s.updateDocument.run({
        ns,
        documentId: document.documentId,
        version: document.version,
        oldest,
        updatedAt: document.updatedAt.getTime(),
      });
    } else {
      s.insertDocument.run({
        ns,
        documentId: document.documentId,
        version: document.version,
        createdAt: document.createdAt.getTime(),
        updatedAt: document.updatedAt.getTime(),
      });
    }
    const revision = this.#appendChange({
      kind: 'document',
      id: document.documentId,
      version: document.version,
      action: change.action,
      actor: change.actor,
      changedAt: change.timestamp.getTime(),
    });
    return { ok: true, revision };
  }

  #appendChange(event: { kind: string; id: string; version: number; action: string; actor: string | null; changedAt: number }): number {
    const s = this.#statements();
    const ns = this.#options.namespace;
    // Inside the writing BEGIN IMMEDIATE transaction: nobody else can take the same number.
    const revision = (s.currentRevision.get(ns)?.r ?? 0) + 1;
    s.appendChange.run({ ns, revision, ...event });
    this.#appended = { revision, ...event };
    // Every 1000th revision (whichever process writes it) trims this namespace's old feed events.
    if (revision % 1000 === 0) s.trimChanges.run(ns, revision - CHANGE_FEED_RETENTION);
    return revision;
  }

  /** Kept history entries in a range, oldest first (see the port). */
  async getHistory(documentId: string, options?: HistoryRange): Promise<StateChange[]> {
    const { s } = await this.#ready();
    const after = options?.after ?? 0;
    const before = options?.before ?? Number.MAX_SAFE_INTEGER;
    const limit = options?.limit === undefined ? -1 : Math.max(0, options.limit);
    const forward = options?.after !== undefined && options.before === undefined;
    const ns = this.#options.namespace;
    const rows = await this.#retryBusy(() => (forward ? s.historyAfter : s.history).all(ns, documentId, after, before, limit));
    if (!forward) rows.reverse();
    return rows.map((row) => {
      const change: StateChange = {
        version: row.version,
        timestamp: new Date(row.changed_at),
        actor: readText(row.actor),
        action: row.action as ChangeAction,
      };
      if (row.summary !== null) change.summary = readText(row.summary);
      return change;
    });
  }

  /** A kept version, or null. */
  async getVersion(documentId: string, version: number): Promise<DocumentRecord | null> {
    const { s } = await this.#ready();
    const row = await this.#retryBusy(() => s.getVersion.get(this.#options.namespace, documentId, version));
    return row ? toDocument(row) : null;
  }

  /** The oldest kept version, or null when the document does not exist. */
  async oldestVersion(documentId: string): Promise<number | null> {
    const { s } = await this.#ready();
    const head = await this.#retryBusy(() => s.getHead.get(this.#options.namespace, documentId));
    return head ? head.oldest_version : null;
  }

  /** Every document's id, version and last update. */
  async listDocuments(): Promise<DocumentSummary[]> {
    const { s } = await this.#ready();
    const rows = await this.#retryBusy(() => s.listDocuments.all(this.#options.namespace));
    return rows.map((r) => ({ documentId: readText(r.document_id), version: r.version, updatedAt: new Date(r.updated_at) }));
  }

  /** A workflow with its CAS revision, or null. */
  async getWorkflow(workflowId: string): Promise<WorkflowRecord | null> {
    const { s } = await this.#ready();
    const row = await this.#retryBusy(() => s.getWorkflow.get(this.#options.namespace, workflowId));
    return row ? toWorkflow(row) : null;
  }

  /** Compare-and-swap on the workflow revision (null = create). */
  async commitWorkflow(workflow: WorkflowRecord, expectedRevision: number | null): Promise<WorkflowCommitResult> {
    const { tx } = await this.#ready();
    const [result, event] = await this.#retryBusy(() => [tx.commitWorkflow(workflow, expectedRevision), this.#appended] as const);
    if (result.ok) this.#wakeNeighbours(event);
    return result;
  }

  #commitWorkflowInTx(workflow: WorkflowRecord, expectedRevision: number | null): WorkflowCommitResult {
    const s = this.#statements();
    const ns = this.#options.namespace;
    const row = s.getWorkflow.get(ns, workflow.workflowId);
    if ((row?.revision ?? null) !== expectedRevision) return { ok: false, current: row ? toWorkflow(row) : null };
    const revision = (expectedRevision ?? 0) + 1;
    const { revision: _old, ...rest } = workflow;
    const body = JSON.stringify({ ...rest, createdAt: workflow.createdAt.getTime(), updatedAt: workflow.updatedAt.getTime() });
    if (expectedRevision === null) s.insertWorkflow.run(ns, workflow.workflowId, revision, body);
    else s.updateWorkflow.run(revision, body, ns, workflow.workflowId, expectedRevision);
    this.#appendChange({
      kind: 'workflow',
      id: workflow.workflowId,
      version: revision,
      action: expectedRevision === null ? 'workflow_create' : 'workflow_update',
      actor: null,
      changedAt: workflow.updatedAt.getTime(),
    });
    return { ok: true, revision };
  }

  /** Every workflow. */
  async listWorkflows(): Promise<WorkflowRecord[]> {
    const { s } = await this.#ready();
    const rows = await this.#retryBusy(() => s.listWorkflows.all(this.#options.namespace));
    return rows.map(toWorkflow);
  }

  /** Change events after `afterRevision`, oldest first (the last `CHANGE_FEED_RETENTION` are kept). */
  async changesSince(afterRevision: number, limit = 1000): Promise<ChangeEvent[]> {
    const { s } = await this.#ready();
    const rows = await this.#retryBusy(() => s.changesSince.all(this.#options.namespace, afterRevision, limit));
    return rows.map(toChange);
  }

  /** The highest revision of this namespace so far. */
  async currentRevision(): Promise<number> {
    const { s } = await this.#ready();
    const row = await this.#retryBusy(() => s.currentRevision.get(this.#options.namespace));
    return row?.r ?? 0;
  }

  /**
   * Delivers change events in revision order, from `afterRevision` (default: now), including
   * other processes' writes (seen by polling every `pollIntervalMs`).
   */
  async watch(handler: (event: ChangeEvent) => void, options?: { afterRevision?: number }): Promise<() => Promise<void>> {
    await this.#ready();
    const after = options?.afterRevision ?? (await this.currentRevision());
    const remove = this.#fanout.add(handler, after);
    this.#timer ??= setInterval(() => void this.#poll(), this.#options.pollIntervalMs).unref();
    await this.#poll();
    return async () => {
      remove();
      if (this.#fanout.size === 0 && this.#timer) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    };
  }

  async #poll(): Promise<void> {
    if (this.#polling) {
      this.#pollAgain = true;
      return;
    }
    this.#polling = true;
    try {
      do {
        this.#pollAgain = false;
        for (;;) {
          const cursor = this.#fanout.minCursor();
          if (cursor === null || !this.#db) return;
          const events = await this.changesSince(cursor, 1000);
          this.#fanout.deliver(events);
          if (events.length < 1000) break;
        }
      } while (this.#pollAgain);
    } catch (err) {
      if (!(err instanceof ClosedError)) {
        process.emitWarning(`SQLite change feed poll failed: ${(err as Error).message}`, { code: 'CONCORD_SQLITE_POLL' });
      }
    } finally {
      this.#polling = false;
    }
  }

  /**
   * After a commit of `event`: wakes the watchers of every store of this process on the same
   * file and namespace (this one included). A store whose watchers all have every event before
   * this one gets it handed over at once; others poll the feed (so nothing is ever skipped).
   */
  #wakeNeighbours(event: AppendedChange | null): void {
    const set = this.#file === ':memory:' ? [this] : (neighbours.get(this.#file) ?? []);
    for (const store of set) {
      if (store.#fanout.size === 0 || store.#options.namespace !== this.#options.namespace) continue;
      const behind = store.#fanout.minCursor();
      if (event && behind !== null && behind >= event.revision - 1)
        store.#fanout.deliverFresh(changeEvent({ ...event, changed_at: event.changedAt }));
      else setImmediate(() => void store.#poll());
    }
  }

  /** Takes the lease in a `BEGIN IMMEDIATE` transaction when it is free or expired. */
  async tryAcquireLock(key: string, ttlMs: number): Promise<LockGrant | null> {
    const { tx } = await this.#ready();
    return this.#retryBusy(() => tx.acquire(key, ttlMs));
  }

  #acquireInTx(key: string, ttlMs: number): LockGrant | null {
    const s = this.#statements();
    const ns = this.#options.namespace;
    const now = Date.now();
    const lock = s.getLock.get(ns, key);
    if (lock && lock.token !== null && lock.expires_at > now) return null;
    const grant: LockGrant = { token: randomUUID(), fence: (lock?.fence ?? 0) + 1, expiresAt: now + ttlMs };
    s.putLock.run(ns, key, grant.token, grant.fence, grant.expiresAt);
    return grant;
  }

  /** Extends the lease while `token` still owns it. */
  async renewLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    const { s } = await this.#ready();
    const info = await this.#retryBusy(() => s.renewLock.run(Date.now() + ttlMs, this.#options.namespace, key, token));
    return info.changes === 1;
  }

  /** Frees the lease if `token` still owns it (the fence number is kept). */
  async releaseLock(key: string, token: string): Promise<void> {
    const { s } = await this.#ready();
    await this.#retryBusy(() => s.releaseLock.run(this.#options.namespace, key, token));
  }

  /** Counts for metrics. `totalChanges` = every document version and workflow write ever committed. */
  async stats(): Promise<{ documents: number; workflows: number; totalChanges: number; sumOfVersions: number }> {
    const { s } = await this.#ready();
    const ns = this.#options.namespace;
    const [docs, wfs] = await this.#retryBusy(() => [s.documentStats.get(ns), s.workflowStats.get(ns)] as const);
    const documents = docs?.n ?? 0;
    const sumOfVersions = docs?.s ?? 0;
    return { documents, workflows: wfs?.n ?? 0, totalChanges: sumOfVersions + (wfs?.s ?? 0), sumOfVersions };
  }

  /** Stops watchers and closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#fanout.clear();
    await this.#connecting?.catch(() => undefined);
    neighbours.get(this.#file)?.delete(this);
    if (neighbours.get(this.#file)?.size === 0) neighbours.delete(this.#file);
    this.#db?.close();
    this.#db = null;
    this.#stmts = null;
    this.#tx = null;
  }

  /** The prepared statements (for use inside transactions, where the store is known open). */
  #statements(): Statements {
    if (this.#closed || !this.#stmts) throw new ClosedError(`SQLite store ${this.url}`);
    return this.#stmts;
  }

  /** Connects on first use, so a store works whether or not `connect()` was called. */
  async #ready(): Promise<{ s: Statements; tx: Transactions }> {
    if (this.#closed) throw new ClosedError(`SQLite store ${this.url}`);
    if (!this.#stmts || !this.#tx) await this.connect();
    if (this.#closed || !this.#stmts || !this.#tx) throw new ClosedError(`SQLite store ${this.url}`);
    return { s: this.#stmts, tx: this.#tx };
  }

  /**
   * Runs a synchronous SQLite call, retrying while the file is busy (another process holds the
   * write lock past `busy_timeout`) with jittered back-off that does not block the event loop.
   */
  async #retryBusy<T>(work: () => T): Promise<T> {
    const deadline = Date.now() + this.#options.busyRetryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return work();
      } catch (err) {
        if (err instanceof ConcordError) throw err;
        if (!isBusy(err)) throw new TransportError(this.url, `SQLite failed: ${(err as Error).message}`, { cause: err });
        if (Date.now() >= deadline) {
          throw new TransportError(this.url, `SQLite database stayed busy (locked by another writer) for ${this.#options.busyRetryMs} ms`, {
            cause: err,
          });
        }
        const backoff = Math.min(100, 2 ** Math.min(attempt, 7));
        await new Promise((r) => setTimeout(r, backoff / 2 + Math.random() * backoff));
      }
    }
  }
}
