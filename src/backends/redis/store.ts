import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
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
import type { ChangeAction, ChangeEvent, StateChange } from '../../state/types.js';
import { readText, toWire } from '../text.js';
import { asTransportError, connectClient, createClient, keySegment, parseRedisUrl, type RedisConfig } from './connection.js';
import { LuaScript, SCRIPTS } from './scripts.js';
import { ChangeFanout, checkCommitShape } from '../../state/store-kit.js';

/** A kept version, bounded by the oldest kept (see the script); a store script not in the shared registry. */
const GET_VERSION = new LuaScript('get-version');

/** Page size when reading the change feed. */
const FEED_PAGE = 500;

/**
 * State store on Redis. Per document a hash of kept version records and a hash of history
 * entries, committed together by one Lua script that checks the version (and a lock's fence),
 * compacts beyond `historyLimit`, bumps the store revision and appends an event to the change
 * feed, a Redis stream whose entry ids are the revisions. Watchers read the stream from their
 * cursor; a PUBLISH on commit only wakes them, so a missed wake-up (a reconnect) loses nothing.
 *
 * @example
 * const state = new StateManager({ store: createRedisStore('redis://127.0.0.1:6379/0?namespace=app') });
 */
export class RedisStore implements StateStore {
  /** Always `redis`. */
  readonly kind = 'redis';
  /** The URL it was made from, credentials redacted. */
  readonly url: string;

  readonly #config: RedisConfig;
  readonly #p: string;
  readonly #cmd: Redis;
  #connecting: Promise<void> | undefined;
  /** `connect()` succeeded once (ioredis reconnects by itself after that). */
  #connected = false;
  #closed = false;
  #sub: Redis | undefined;
  #subConnecting: Promise<Redis> | undefined;
  readonly #fanout = new ChangeFanout();
  /** The feed reader is running / was asked to look again / will retry after a failure. */
  #reading = false;
  #readAgain = false;
  #retry: NodeJS.Timeout | undefined;

  /** `url`: `redis://host:port/db?namespace=NAME`. Nothing connects until `connect()` or first use. */
  constructor(url: string) {
    this.#config = parseRedisUrl(url);
    this.url = this.#config.url;
    this.#p = this.#config.prefix + 's:';
    // No autopipelining: it delays every lone command; what runs concurrently is pipelined by ioredis' write queue anyway.
    this.#cmd = createClient(this.#config, 'store');
  }

  /** The parsed configuration (host, port, db, namespace, key prefix). */
  get config(): Readonly<RedisConfig> {
    return this.#config;
  }

  /** Connects; `TransportError` naming the URL when Redis is unreachable. Idempotent. */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError('redis store'));
    this.#connecting ??= connectClient(this.#cmd, this.#config).then(
      () => {
        this.#connected = true;
      },
      (err: unknown) => {
        this.#connecting = undefined;
        throw err;
      },
    );
    return this.#connecting;
  }

  async #client(): Promise<Redis> {
    if (this.#closed) throw new ClosedError('redis store');
    await this.connect();
    return this.#cmd;
  }

  async #run(name: keyof typeof SCRIPTS, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    // Once connected, straight to the client: the write path should not wait on `connect()` each time.
    const client = this.#connected && !this.#closed ? this.#cmd : await this.#client();
    try {
      return await SCRIPTS[name].run(client, keys, args);
    } catch (err) {
      throw asTransportError(this.#config, name, err);
    }
  }

  async #call<T>(what: string, fn: (client: Redis) => Promise<T>): Promise<T> {
    const client = await this.#client();
    try {
      return await fn(client);
    } catch (err) {
      throw asTransportError(this.#config, what, err);
    }
  }

  #docKeys(documentId: string) {
    const seg = keySegment(documentId);
    return { doc: `${this.#p}doc:${seg}`, ver: `${this.#p}ver:${seg}`, hist: `${this.#p}hist:${seg}` };
  }

  // ------------------------------------------------------------------ documents

  /** The current record, or null. */
  async getDocument(documentId: string): Promise<DocumentRecord | null> {
    const k = this.#docKeys(documentId);
    const raw = await this.#run('get-document', [k.doc, k.ver], []);
    return typeof raw === 'string' ? decodeRecord(raw) : null;
  }

  /** One script: CAS on the version (and fence), record + history entry, compaction, feed event. */
  async commitDocument(request: CommitRequest): Promise<CommitResult> {
    checkCommitShape(request);
    const { document, change, expectedVersion, historyLimit, fence } = request;
    const k = this.#docKeys(document.documentId);
    const raw = (await this.#run(
      'commit-document',
      [
        k.doc,
        k.ver,
        k.hist,
        this.#p + 'docs',
        this.#p + 'rev',
        this.#p + 'feed',
        this.#p + 'stats',
        fence ? `${this.#p}fence:${keySegment(fence.key)}` : this.#p + 'rev',
      ],
      [
        // Ids and actors are stored as raw values (docs hash, feed fields): exact bytes (see text.ts).
        toWire(document.documentId),
        expectedVersion === null ? '' : String(expectedVersion),
        String(document.version),
        encodeRecord(document),
        encodeChange(change),
        historyLimit,
        fence ? String(fence.token) : '',
        this.#config.feedMaxLen,
        change.action,
        toWire(change.actor),
        change.timestamp.getTime(),
        this.#p + 'wake',
        document.updatedAt.getTime(),
        JSON.stringify({
          k: 'document',
          i: document.documentId,
          v: document.version,
          a: change.action,
          u: change.actor,
          t: change.timestamp.getTime(),
        }),
      ],
    )) as [string, unknown];
    const [status, detail] = raw;
    if (status === 'ok') {
      const revision = Number(detail);
      this.#committed({
        revision,
        kind: 'document',
        id: document.documentId,
        version: document.version,
        action: change.action,
        actor: change.actor,
        timestamp: new Date(change.timestamp.getTime()),
      });
      return { ok: true, revision };
    }
    return {
      ok: false,
      reason: status as 'conflict' | 'exists' | 'not_found' | 'fenced',
      current: typeof detail === 'string' ? decodeRecord(detail) : null,
    };
  }

  /** Kept history entries in a range, oldest first (see the port); the script reads only those. */
  async getHistory(documentId: string, options?: HistoryRange): Promise<StateChange[]> {
    const k = this.#docKeys(documentId);
    const limit = options?.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
    if (limit === 0) return [];
    const before = options?.before === undefined ? '' : String(options.before);
    const after = options?.after === undefined ? '' : String(options.after);
    const raw = (await this.#run('get-history', [k.doc, k.hist], [limit, before, after])) as string[];
    return raw.map(decodeChange);
  }

  /** A kept version's record, or null when compacted or never written. */
  async getVersion(documentId: string, version: number): Promise<DocumentRecord | null> {
    const k = this.#docKeys(documentId);
    const client = await this.#client();
    let raw: unknown;
    try {
      raw = await GET_VERSION.run(client, [k.doc, k.ver], [version]);
    } catch (err) {
      throw asTransportError(this.#config, 'getVersion', err);
    }
    return typeof raw === 'string' ? decodeRecord(raw) : null;
  }

  /** Oldest version still kept, or null if the document does not exist. */
  async oldestVersion(documentId: string): Promise<number | null> {
    const k = this.#docKeys(documentId);
    const raw = await this.#call('oldestVersion', (c) => c.hget(k.doc, 'oldest'));
    return raw === null ? null : Number(raw);
  }

  /** Every document's id, version and last update. */
  async listDocuments(): Promise<DocumentSummary[]> {
    // As bytes: field names are ids, which may hold lone surrogates (see text.ts).
    const flat = (await this.#call('listDocuments', (c) => c.callBuffer('HGETALL', this.#p + 'docs'))) as Buffer[];
    const out: DocumentSummary[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const [version, updated] = flat[i + 1]!.toString().split(':');
      out.push({ documentId: readText(flat[i]!), version: Number(version), updatedAt: new Date(Number(updated)) });
    }
    return out;
  }

  // ------------------------------------------------------------------ workflows

  /** The stored workflow with its CAS revision, or null. */
  async getWorkflow(workflowId: string): Promise<WorkflowRecord | null> {
    const raw = await this.#call('getWorkflow', (c) => c.hget(`${this.#p}wf:${keySegment(workflowId)}`, 'j'));
    return raw === null ? null : decodeWorkflow(raw);
  }

  /** CAS on the revision (null = must not exist); writes `workflow` with revision + 1. */
  async commitWorkflow(workflow: WorkflowRecord, expectedRevision: number | null): Promise<WorkflowCommitResult> {
    const revision = (expectedRevision ?? 0) + 1;
    const raw = (await this.#run(
      'commit-workflow',
      [`${this.#p}wf:${keySegment(workflow.workflowId)}`, this.#p + 'wfs', this.#p + 'rev', this.#p + 'feed', this.#p + 'stats'],
      [
        toWire(workflow.workflowId),
        expectedRevision === null ? '' : String(expectedRevision),
        encodeWorkflow({ ...workflow, revision }),
        revision,
        this.#config.feedMaxLen,
        workflow.updatedAt.getTime(),
        this.#p + 'wake',
        JSON.stringify({
          k: 'workflow',
          i: workflow.workflowId,
          v: revision,
          a: expectedRevision === null ? 'workflow_create' : 'workflow_update',
          t: workflow.updatedAt.getTime(),
        }),
      ],
    )) as [number, unknown];
    const [ok, detail] = raw;
    if (ok === 1) {
      this.#committed({
        revision: Number(detail),
        kind: 'workflow',
        id: workflow.workflowId,
        version: revision,
        action: expectedRevision === null ? 'workflow_create' : 'workflow_update',
        timestamp: new Date(workflow.updatedAt.getTime()),
      });
      return { ok: true, revision };
    }
    return { ok: false, current: typeof detail === 'string' ? decodeWorkflow(detail) : null };
  }

  /** Every workflow. */
  async listWorkflows(): Promise<WorkflowRecord[]> {
    return this.#call('listWorkflows', async (c) => {
      const ids = (await c.smembersBuffer(this.#p + 'wfs')).map((id) => readText(id));
      const raws = await Promise.all(ids.map((id) => c.hget(`${this.#p}wf:${keySegment(id)}`, 'j')));
      return raws.filter((r): r is string => r !== null).map(decodeWorkflow);
    });
  }

  // ------------------------------------------------------------------ change feed

  /** Events with revision > `afterRevision`, oldest first (all of them when no `limit`). */
  async changesSince(afterRevision: number, limit?: number): Promise<ChangeEvent[]> {
    const out: ChangeEvent[] = [];
    let after = Math.max(0, Math.floor(afterRevision));
    const max = limit === undefined ? Infinity : Math.max(0, Math.floor(limit));
    while (out.length < max) {
      const count = Math.min(FEED_PAGE, max - out.length);
      const entries = await this.#call('changesSince', (c) => c.xrangeBuffer(this.#p + 'feed', `${after + 1}-0`, '+', 'COUNT', count));
      for (const [id, fields] of entries)
        out.push(
          decodeEvent(
            id.toString(),
            fields.map((f) => readText(f)),
          ),
        );
      const last = out[out.length - 1];
      if (entries.length < count || !last) break;
      after = last.revision;
    }
    return out;
  }

  /** Highest revision so far (0 when empty). */
  async currentRevision(): Promise<number> {
    const raw = await this.#call('currentRevision', (c) => c.get(this.#p + 'rev'));
    return raw === null ? 0 : Number(raw);
  }

  /**
   * Delivers every change after `afterRevision` (default: from now) to `handler`, in order,
   * including commits from other processes: a PUBLISH wakes this store, which then reads the
   * stream from the lowest watcher cursor. Resolves once live.
   */
  async watch(handler: (event: ChangeEvent) => void, options?: { afterRevision?: number }): Promise<() => Promise<void>> {
    await this.#subscriber();
    const after = options?.afterRevision ?? (await this.currentRevision());
    const stop = this.#fanout.add(handler, after);
    this.#readFeed();
    return async () => stop();
  }

  #subscriber(): Promise<Redis> {
    if (this.#closed) return Promise.reject(new ClosedError('redis store'));
    this.#subConnecting ??= (async () => {
      await this.connect();
      const sub = createClient(this.#config, 'store-sub');
      sub.on('message', (_channel: string, data: string) => this.#onWake(data));
      // After a reconnect, wake-ups published meanwhile are gone: catch up from the cursors.
      sub.on('ready', () => this.#readFeed());
      this.#sub = sub;
      await connectClient(sub, this.#config);
      await sub.subscribe(this.#p + 'wake');
      return sub;
    })().catch((err: unknown) => {
      this.#subConnecting = undefined;
      this.#sub?.disconnect();
      throw asTransportError(this.#config, 'watch', err);
    });
    return this.#subConnecting;
  }

  /**
   * After this store's own commit of `event`: watchers that have every event before it get it at
   * once (its wake-up, when it comes, is then already behind them); otherwise the stream is read.
   */
  #committed(event: ChangeEvent): void {
    const min = this.#fanout.minCursor();
    if (min === null) return;
    if (min >= event.revision - 1) this.#fanout.deliverFresh(event);
    else if (event.revision > min) this.#readFeed();
  }

  /**
   * A wake-up carries its event: when every watcher is right behind it, deliver it without a
   * stream read; after a gap (a missed wake-up, a watcher resuming from further back) read the
   * stream, which is the source of truth.
   */
  #onWake(data: string): void {
    const min = this.#fanout.minCursor();
    if (min === null) return;
    const space = data.indexOf(' ');
    const revision = Number(space < 0 ? data : data.slice(0, space));
    if (space > 0 && revision === min + 1) {
      try {
        const f = JSON.parse(data.slice(space + 1)) as Record<string, string | number>;
        const event: ChangeEvent = {
          revision,
          kind: f['k'] === 'workflow' ? 'workflow' : 'document',
          id: String(f['i']),
          version: Number(f['v']),
          action: String(f['a']) as ChangeEvent['action'],
          timestamp: new Date(Number(f['t'])),
        };
        if (f['u'] !== undefined) event.actor = String(f['u']);
        this.#fanout.deliverFresh(event);
        return;
      } catch {
        // Not an event we understand: read the stream instead.
      }
    }
    if (revision > min) this.#readFeed();
  }

  /** Reads the feed from the lowest watcher cursor until caught up; one reader at a time. */
  #readFeed(): void {
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = true;
    void (async () => {
      try {
        do {
          this.#readAgain = false;
          for (;;) {
            const cursor = this.#fanout.minCursor();
            if (cursor === null || this.#closed) return;
            const events = await this.changesSince(cursor, FEED_PAGE);
            this.#fanout.deliver(events);
            if (events.length < FEED_PAGE) break;
          }
        } while (this.#readAgain);
      } catch {
        // Redis unreachable: look again shortly (a reconnect also triggers a read).
        if (!this.#closed && !this.#retry) {
          this.#retry = setTimeout(() => {
            this.#retry = undefined;
            this.#readFeed();
          }, 200);
        }
      } finally {
        this.#reading = false;
      }
    })();
  }

  // ------------------------------------------------------------------ locks

  /** Takes the lock lease if free: a random token plus a fencing number that grows with every acquisition. */
  async tryAcquireLock(key: string, ttlMs: number): Promise<LockGrant | null> {
    const seg = keySegment(key);
    const token = randomBytes(12).toString('base64url');
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const started = Date.now();
    const fence = await this.#run('lock-acquire', [`${this.#p}lock:${seg}`, `${this.#p}fence:${seg}`], [token, ttl]);
    if (fence === null || fence === false || fence === undefined) return null;
    // Counted from before the request: never later than the server's own expiry.
    return { token, fence: Number(fence), expiresAt: started + ttl };
  }

  /** Extends a held lock; false if it was lost. */
  async renewLock(key: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.#run('lock-renew', [`${this.#p}lock:${keySegment(key)}`], [token, Math.max(1, Math.ceil(ttlMs))])) === 1;
  }

  /** Frees a held lock (no-op when it was lost). */
  async releaseLock(key: string, token: string): Promise<void> {
    await this.#run('lock-release', [`${this.#p}lock:${keySegment(key)}`], [token]);
  }

  // ------------------------------------------------------------------ stats, close

  /**
   * Store-wide counts. Every commit bumps the revision once and a document commit adds one to
   * its document's version, so `totalChanges` is the revision and `sumOfVersions` the revision
   * minus the workflow writes (the one counter commit-workflow keeps); document commits keep none.
   */
  async stats(): Promise<{ documents: number; workflows: number; totalChanges: number; sumOfVersions: number }> {
    return this.#call('stats', async (c) => {
      const [documents, workflows, rev, workflowWrites] = await Promise.all([
        c.hlen(this.#p + 'docs'),
        c.scard(this.#p + 'wfs'),
        c.get(this.#p + 'rev'),
        c.hget(this.#p + 'stats', 'wfw'),
      ]);
      const totalChanges = Number(rev ?? 0);
      return { documents, workflows, totalChanges, sumOfVersions: totalChanges - Number(workflowWrites ?? 0) };
    });
  }

  /** Ends every watch and closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fanout.clear();
    if (this.#retry) clearTimeout(this.#retry);
    this.#sub?.disconnect();
    if (this.#connecting) {
      try {
        await this.#connecting;
        await this.#cmd.quit();
      } catch {
        this.#cmd.disconnect();
      }
    } else {
      this.#cmd.disconnect();
    }
  }
}

// ------------------------------------------------------------------ codecs

function encodeRecord(r: DocumentRecord): string {
  return JSON.stringify({
    documentId: r.documentId,
    version: r.version,
    content: r.content,
    metadata: r.metadata,
    createdAt: r.createdAt.getTime(),
    updatedAt: r.updatedAt.getTime(),
  });
}

function decodeRecord(json: string): DocumentRecord {
  const o = JSON.parse(json) as {
    documentId: string;
    version: number;
    content: string;
    metadata: Record<string, unknown>;
    createdAt: number;
    updatedAt: number;
  };
  return {
    documentId: o.documentId,
    version: o.version,
    content: o.content,
    metadata: o.metadata,
    createdAt: new Date(o.createdAt),
    updatedAt: new Date(o.updatedAt),
  };
}

function encodeChange(c: StateChange): string {
  return JSON.stringify({ ...c, timestamp: c.timestamp.getTime() });
}

function decodeChange(json: string): StateChange {
  const o = JSON.parse(json) as Omit<StateChange, 'timestamp'> & { timestamp: number };
  return { ...o, timestamp: new Date(o.timestamp) };
}

function encodeWorkflow(w: WorkflowRecord): string {
  return JSON.stringify({ ...w, createdAt: w.createdAt.getTime(), updatedAt: w.updatedAt.getTime() });
}

function decodeWorkflow(json: string): WorkflowRecord {
  const o = JSON.parse(json) as Omit<WorkflowRecord, 'createdAt' | 'updatedAt'> & { createdAt: number; updatedAt: number };
  return { ...o, createdAt: new Date(o.createdAt), updatedAt: new Date(o.updatedAt) };
}

function decodeEvent(id: string, fields: string[]): ChangeEvent {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const event: ChangeEvent = {
    revision: Number(id.split('-')[0]),
    kind: f['k'] === 'workflow' ? 'workflow' : 'document',
    id: f['i'] ?? '',
    version: Number(f['v']),
    action: (f['a'] ?? 'update_content') as ChangeAction | 'workflow_update' | 'workflow_create',
    timestamp: new Date(Number(f['t'])),
  };
  if (f['u'] !== undefined) event.actor = f['u'];
  return event;
}
