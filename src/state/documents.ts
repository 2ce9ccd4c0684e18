/**
 * Documents: creating, reading and the one write path every change takes (content, metadata,
 * merge, restore), with the cache and write memo that make a known base cost one store round
 * trip. Internal; the `StateManager` facade delegates here.
 */
import { tracedCommit, tracedConflict } from '../observability/tracing.js';
import { DocumentExistsError, DocumentNotFoundError, StateConflictError, ValidationError } from '../errors.js';
import { KnownDocument, type RecentDocuments, type VersionedCache } from './cache.js';
import type { ChangeFeed } from './change-feed.js';
import { copyDocument, copyJson, freezeJson, newChange, sealedNow, sealOwnChange } from './copy.js';
import { MAX_WRITE_ATTEMPTS, raceBackoff, type StateCore } from './core.js';
import type { CreateDocumentInput, UpdateContentInput, UpdateMetadataInput } from './inputs.js';
import { LockLostError, type LockScope } from './locks.js';
import { countableLines, lineDiffStats, lineDiffStatsOfLines, summarizeStats, threeWayMerge } from './merge.js';
import type { OwnCommits } from './own-commits.js';
import type { CommitRequest, CommitResult, DocumentRecord, StateStore } from './store.js';
import type { ChangeAction, DocumentState, StateChange } from './types.js';
import * as v from './validate.js';

interface Base {
  /** The base version; not changed while the write holds it (a copy when it came from the write memo). */
  record: DocumentRecord;
  /**
   * The history window ending at `record.version`, when known as an array (a store read or the
   * read cache); a base from the write memo has its window there (see `#committed`).
   */
  history: StateChange[] | undefined;
  /** Read from the store just now (not from the cache). */
  fresh: boolean;
  /**
   * The write memo's entry for the document when the base was taken, if any: `#committed`
   * advances it without looking the document up again (one memo lookup per write: at 100 000
   * documents each is a cache miss).
   */
  known: KnownDocument | undefined;
}

interface PlannedChange {
  content: string;
  metadata: Record<string, unknown>;
  action: ChangeAction;
  summary: string;
}

/** A history summary with the caller's note in front, if any: `draft 2: +12 -3 lines`. */
function withNote(note: string | undefined, summary: string): string {
  return note === undefined ? summary : `${note}: ${summary}`;
}

function metadataSummary(keys: string[], mode: 'merge' | 'replace'): string {
  const shown = keys.slice(0, 5).join(', ') + (keys.length > 5 ? `, +${keys.length - 5} more` : '');
  return mode === 'replace' ? `metadata replaced (${keys.length} keys)` : `metadata: ${shown || 'no keys'}`;
}

export class Documents {
  #core: StateCore;
  #feed: ChangeFeed;
  #locks: LockScope;
  // The core's parts the write path uses, held here so each access is one field load.
  #historyLimit: number;
  #historyWindow: number;
  /** Entries a document's history window holds: `historyWindow`, at most `historyLimit`. */
  #windowKeep: number;
  #docCache: VersionedCache<DocumentState> | null;
  #recent: RecentDocuments;
  #own: OwnCommits;

  /**
   * The last content a content update split into lines, and its lines: the base of the next
   * update of the same document is that very string, so a run of writes to one document splits
   * each text once. One pair for the whole manager, not one per document: kept per document, each
   * line array lived until that document's next write and was promoted (bench/NOTES.md, issue 25).
   */
  #splitContent: string | undefined;
  #splitLines: string[] = [];

  constructor(core: StateCore, feed: ChangeFeed, locks: LockScope) {
    this.#core = core;
    this.#feed = feed;
    this.#locks = locks;
    this.#historyLimit = core.historyLimit;
    this.#historyWindow = core.historyWindow;
    this.#windowKeep = core.windowKeep;
    this.#docCache = core.docCache;
    this.#recent = core.recent;
    this.#own = feed.own;
  }

  /** See `StateManager.createDocumentState`. */
  async createDocumentState(input: CreateDocumentInput): Promise<DocumentState> {
    const req = v.requestObject(input, 'createDocumentState');
    const documentId = v.id(req['documentId'], 'documentId');
    const topic = v.nonEmptyString(req['topic'], 'topic');
    const requirements = req['requirements'] === undefined ? {} : v.requirements(req['requirements']);
    const context = req['context'] === undefined ? {} : v.jsonObject(req['context'], 'context');
    const content = req['content'] === undefined ? '' : v.string(req['content'], 'content');
    const extra = req['metadata'] === undefined ? {} : v.jsonObject(req['metadata'], 'metadata');
    const actor = req['actor'] === undefined ? 'system' : v.nonEmptyString(req['actor'], 'actor');
    const metadata = copyJson({ ...extra, topic, requirements, context });
    const store = await this.#core.s();
    const state = await this.create(store, documentId, content, metadata, actor, 'create', summarizeStats(lineDiffStats('', content)));
    if (!state) throw new DocumentExistsError(documentId);
    return state;
  }

  /** See `StateManager.getDocumentState`. */
  async getDocumentState(documentId: string): Promise<DocumentState | null> {
    const id = v.id(documentId, 'documentId');
    const cached = this.#docCache?.get(id);
    if (cached) return copyDocument(cached);
    const state = await this.#load(await this.#core.s(), id);
    return state ? copyDocument(state) : null;
  }

  /** See `StateManager.updateDocumentContent`. */
  updateDocumentContent(input: UpdateContentInput): Promise<DocumentState> {
    // Not an async function: the write path is one already, and a second frame and await per
    // update showed in the memory store's allocation profile (bench/NOTES.md, round 8).
    try {
      const req = v.requestObject(input, 'updateDocumentContent');
      const documentId = v.id(req['documentId'], 'documentId');
      const content = v.string(req['content'], 'content');
      const actor = v.nonEmptyString(req['actor'], 'actor');
      const expectedVersion = v.optionalPositiveInteger(req['expectedVersion'], 'expectedVersion');
      const merge = v.optionalBoolean(req['merge'], 'merge') ?? false;
      const note = v.optionalSummary(req['summary']);
      if (merge && expectedVersion === undefined) {
        throw new ValidationError('merge: true needs expectedVersion (the version your edit is based on), got none', {
          field: 'expectedVersion',
        });
      }
      const store = this.#core.openStore();
      if (!store) return this.#core.s().then(() => this.updateDocumentContent(input));
      let mergeBase: DocumentRecord | null | undefined;
      return this.write(store, documentId, actor, expectedVersion, merge, (current) => {
        if (expectedVersion === undefined || current.version === expectedVersion) {
          const summary = withNote(note, summarizeStats(this.#contentDiff(current.content, content)));
          return { content, metadata: current.metadata, action: 'update_content', summary };
        }
        return (async () => {
          mergeBase ??= this.#knownVersion(documentId, expectedVersion) ?? (await store.getVersion(documentId, expectedVersion));
          return await this.#planMerge(store, current, expectedVersion, mergeBase, content, note);
        })();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The line counts of a content update from `before` to `after` (see `#splitContent`). */
  #contentDiff(before: string, after: string): { added: number; removed: number } {
    if (before === after) return { added: 0, removed: 0 };
    const beforeLines = before === this.#splitContent ? this.#splitLines : countableLines(before);
    const afterLines = countableLines(after);
    this.#splitContent = after;
    this.#splitLines = afterLines;
    return lineDiffStatsOfLines(beforeLines, afterLines);
  }

  /** The merge of an edit based on `expectedVersion` (`base`, null when compacted) onto `current`. */
  async #planMerge(
    store: StateStore,
    current: DocumentRecord,
    expectedVersion: number,
    base: DocumentRecord | null,
    content: string,
    note: string | undefined,
  ): Promise<PlannedChange> {
    const { documentId } = current;
    if (!base) {
      const oldest = await store.oldestVersion(documentId);
      throw new StateConflictError(documentId, expectedVersion, current.version, {
        current: await this.#currentState(store, current),
        message:
          `document \`${documentId}\` is at version ${current.version}, expected version ${expectedVersion}; ` +
          `cannot merge because version ${expectedVersion} was compacted (oldest kept is ${oldest ?? 'none'})`,
      });
    }
    const merged = threeWayMerge({ base: base.content, ours: content, theirs: current.content });
    if (!merged.ok) {
      throw tracedConflict(
        new StateConflictError(documentId, expectedVersion, current.version, {
          current: await this.#currentState(store, current),
          conflicts: merged.conflicts,
          message:
            `document \`${documentId}\` is at version ${current.version}, expected version ${expectedVersion}; ` +
            `the edit overlaps changes made since in ${merged.conflicts.length} region(s), so it was not merged`,
        }),
      );
    }
    return {
      content: merged.content,
      metadata: current.metadata,
      action: 'merge',
      summary: withNote(
        note,
        `merged onto v${current.version} from v${expectedVersion}: ${summarizeStats(lineDiffStats(current.content, merged.content))}`,
      ),
    };
  }

  /** See `StateManager.updateDocumentMetadata`. */
  async updateDocumentMetadata(input: UpdateMetadataInput): Promise<DocumentState> {
    const req = v.requestObject(input, 'updateDocumentMetadata');
    const documentId = v.id(req['documentId'], 'documentId');
    const metadata = copyJson(v.jsonObject(req['metadata'], 'metadata'));
    const actor = v.nonEmptyString(req['actor'], 'actor');
    const expectedVersion = v.optionalPositiveInteger(req['expectedVersion'], 'expectedVersion');
    const mode = req['mode'] ?? 'merge';
    if (mode !== 'merge' && mode !== 'replace') {
      throw new ValidationError(`mode must be \`merge\` or \`replace\`, got ${v.describe(mode)}`, { field: 'mode' });
    }
    const summary = v.optionalSummary(req['summary']) ?? metadataSummary(Object.keys(metadata), mode);
    const store = await this.#core.s();
    return await this.write(store, documentId, actor, expectedVersion, false, (current) => ({
      content: current.content,
      metadata: mode === 'replace' ? metadata : { ...current.metadata, ...metadata },
      action: 'update_metadata',
      summary,
    }));
  }

  /** Creates a document at version 1; null when it already exists. */
  async create(
    store: StateStore,
    documentId: string,
    content: string,
    metadata: Record<string, unknown>,
    actor: string,
    action: ChangeAction,
    summary: string,
  ): Promise<DocumentState | null> {
    // One immutable Date serves the record and its history entry, which are never handed out as is.
    const now = sealedNow();
    const document: DocumentRecord = { documentId, version: 1, content, metadata: freezeJson(metadata), createdAt: now, updatedAt: now };
    const change = newChange(1, now, actor, action, summary);
    const fence = this.#locks.fenceFor(documentId);
    const request: CommitRequest = { document, change, expectedVersion: null, historyLimit: this.#historyLimit };
    if (fence) request.fence = fence;
    const own = this.#own.begin('document', documentId, 1);
    let result: CommitResult | undefined;
    try {
      result = await tracedCommit(store, request);
    } finally {
      this.#own.end(own, result?.ok === true);
    }
    if (result.ok) return this.#committed(store, document, change, 0, [], undefined, result.revision);
    if (result.reason === 'fenced') throw new LockLostError(documentId, fence?.token ?? 0);
    if (result.current) this.#docCache?.saw(documentId, result.current.version);
    return null;
  }

  /**
   * The write path of every document change: take the base version (the version the caller
   * expects, when this manager already knows it; else the cache or the store), plan the change
   * on top of it, commit with compare-and-swap on that version: one store round trip when the
   * base is known. A lost race raises `StateConflictError` when the caller named
   * `expectedVersion` (and is not merging); otherwise the plan is re-run on the version that
   * won, so no update is ever lost.
   */
  async write(
    store: StateStore,
    documentId: string,
    actor: string,
    expectedVersion: number | undefined,
    merge: boolean,
    plan: (current: DocumentRecord) => PlannedChange | Promise<PlannedChange>,
  ): Promise<DocumentState> {
    const fence = this.#locks.fenceFor(documentId);
    let base = this.#knownBase(documentId, expectedVersion) ?? (await this.#loadBase(store, documentId));
    for (let attempt = 1; ; attempt++) {
      if (!base) throw new DocumentNotFoundError(documentId);
      if (expectedVersion !== undefined && base.record.version !== expectedVersion) {
        if (!base.fresh) {
          // What this manager knew may lag other writers: decide on the store's word.
          this.#forget(documentId);
          base = await this.#loadBase(store, documentId);
          continue;
        }
        if (!merge || expectedVersion > base.record.version) {
          // A fresh base was just read with its history window: no need to read it again.
          const current = base.history
            ? copyDocument({ ...base.record, history: base.history })
            : await this.#currentState(store, base.record);
          throw tracedConflict(new StateConflictError(documentId, expectedVersion, base.record.version, { current }));
        }
      }
      const planning = plan(base.record);
      const planned = planning instanceof Promise ? await planning : planning;
      const now = sealedNow();
      const version = base.record.version + 1;
      const document: DocumentRecord = {
        documentId,
        version,
        content: planned.content,
        // Frozen (a no-op for the base's metadata carried over): the memory store then keeps it as is.
        metadata: freezeJson(planned.metadata),
        createdAt: base.record.createdAt,
        updatedAt: now,
      };
      const change = newChange(version, now, actor, planned.action, planned.summary);
      const request: CommitRequest = { document, change, expectedVersion: base.record.version, historyLimit: this.#historyLimit };
      if (fence) request.fence = fence;
      const own = this.#own.begin('document', documentId, version);
      let result: CommitResult | undefined;
      try {
        result = await tracedCommit(store, request);
      } finally {
        this.#own.end(own, result?.ok === true);
      }
      if (result.ok) return this.#committed(store, document, change, base.record.version, base.history, base.known, result.revision);
      this.#forget(documentId);
      if (result.reason === 'fenced') throw new LockLostError(documentId, fence?.token ?? 0);
      if (result.reason === 'not_found' || !result.current) throw new DocumentNotFoundError(documentId);
      this.#docCache?.saw(documentId, result.current.version);
      if (expectedVersion !== undefined && !merge) throw await this.#conflict(store, documentId, expectedVersion, result.current);
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw new StateConflictError(documentId, base.record.version, result.current.version, {
          current: await this.#currentState(store, result.current),
          message: `document \`${documentId}\` kept changing under this write: gave up after ${attempt} attempts`,
        });
      }
      base = { record: result.current, history: undefined, fresh: true, known: undefined };
      await raceBackoff(attempt);
    }
  }

  /**
   * The base of a write as far as this manager knows it, without asking the store. Without
   * `expectedVersion`: the newest state it knows (cache or write memo). With it: that version,
   * if known. Otherwise undefined, and the store's current state is the base (the caller then
   * gets a conflict or, merging, a merge onto it).
   */
  #knownBase(documentId: string, expectedVersion: number | undefined): Base | undefined {
    const cached = this.#docCache?.get(documentId);
    const recent = this.#recent.get(documentId);
    let fromCache = cached !== undefined && (recent === undefined || cached.version >= recent.version);
    if (expectedVersion !== undefined && (fromCache ? cached!.version : recent?.version) !== expectedVersion) {
      if (cached?.version === expectedVersion) fromCache = true;
      else if (recent?.version === expectedVersion) fromCache = false;
      else return undefined;
    }
    if (fromCache) return { record: cached!, history: cached!.history, fresh: false, known: recent };
    return recent ? { record: recent.record(), history: undefined, fresh: false, known: recent } : undefined;
  }

  /** The store's current state of the document as a write base, or null when it does not exist. */
  async #loadBase(store: StateStore, documentId: string): Promise<Base | null> {
    const state = await this.#load(store, documentId);
    return state ? { record: state, history: state.history, fresh: true, known: undefined } : null;
  }

  /** A version of the document this manager knows without asking the store, if any. */
  #knownVersion(documentId: string, version: number): DocumentRecord | undefined {
    const recent = this.#recent.get(documentId);
    if (recent?.version === version) return recent.record();
    const cached = this.#docCache?.get(documentId);
    return cached?.version === version ? cached : undefined;
  }

  /** Drops what this manager knows of the document's current state (cache and write memo). */
  #forget(documentId: string): void {
    this.#docCache?.delete(documentId);
    this.#recent.delete(documentId);
  }

  /** Reads a document with its history window from the store, caches and remembers it. Internal: copy before handing out. */
  async #load(store: StateStore, documentId: string): Promise<DocumentState | null> {
    const record = await store.getDocument(documentId);
    if (!record) return null;
    const state = await this.#stateOf(store, record);
    this.#docCache?.put(documentId, state.version, state);
    this.#recent.set(new KnownDocument(state, state.history, this.#windowKeep));
    return state;
  }

  /** A record plus its history window: a keyed read of exactly the window ending at its version. */
  async #stateOf(store: StateStore, record: DocumentRecord): Promise<DocumentState> {
    // The record is this call's own copy and becomes a write base: its metadata is frozen like the manager's own.
    return { ...record, metadata: freezeJson(record.metadata), history: await this.windowAt(store, record.documentId, record.version) };
  }

  /**
   * The sealed history window ending at `version`, read from the store: exactly the entries it
   * shows (at most `historyWindow`), whatever the document's depth or later writes. The store's
   * entries are new objects of this call's own, so they are sealed in place.
   */
  async windowAt(store: StateStore, documentId: string, version: number): Promise<StateChange[]> {
    const history = await store.getHistory(documentId, { before: version + 1, limit: this.#historyWindow });
    for (let i = 0; i < history.length; i++) history[i] = sealOwnChange(history[i]!);
    return history;
  }

  /** `#stateOf` for a record just read as current (a conflict's): remembered here, and a copy handed out. */
  async #currentState(store: StateStore, record: DocumentRecord): Promise<DocumentState> {
    const state = await this.#stateOf(store, record);
    this.#recent.set(new KnownDocument(state, state.history, this.#windowKeep));
    return copyDocument(state);
  }

  async #conflict(store: StateStore, documentId: string, expectedVersion: number, current: DocumentRecord): Promise<StateConflictError> {
    return new StateConflictError(documentId, expectedVersion, current.version, { current: await this.#currentState(store, current) });
  }

  /**
   * After a successful commit: metrics, the new state's history window, cache and write memo.
   * When the memo knows the base version, its entry is advanced in place and gives the window;
   * else the base's window plus the new entry, when known; else the window is read from the
   * store. `document` and `change` were built by this manager and are kept as they are (nothing
   * outside holds them); the caller gets a copy.
   */
  #committed(
    store: StateStore,
    document: DocumentRecord,
    change: StateChange,
    baseVersion: number,
    baseHistory: StateChange[] | undefined,
    baseKnown: KnownDocument | undefined,
    revision: number,
  ): DocumentState | Promise<DocumentState> {
    this.#feed.noteOwnWrite(document.version === 1 ? 'create' : 'update', 'document', revision);
    // The memo's entry as the write found it, while the memo still holds it; else looked up.
    const known = baseKnown?.remembered ? baseKnown : this.#recent.get(document.documentId);
    if (known !== undefined && known.version === baseVersion) {
      this.#recent.advance(known, document, change);
      return this.#keep(document, known.history(), false);
    }
    if (!baseHistory)
      return this.windowAt(store, document.documentId, document.version).then((history) => this.#keep(document, history, true));
    const history = baseHistory.slice(Math.max(0, baseHistory.length + 1 - this.#windowKeep));
    history.push(change); // sealed by newChange
    return this.#keep(document, history, true);
  }

  /**
   * The caller's copy of a just-committed state with its (new, unshared) window `history`;
   * caches it, and remembers it in the write memo when `remember` (not advanced there already).
   */
  #keep(document: DocumentRecord, history: StateChange[], remember: boolean): DocumentState {
    if (remember) this.#recent.set(new KnownDocument(document, history, this.#windowKeep));
    this.#docCache?.put(document.documentId, document.version, { ...document, history: history.slice() });
    return {
      documentId: document.documentId,
      version: document.version,
      content: document.content,
      metadata: copyJson(document.metadata),
      history,
      createdAt: new Date(document.createdAt.getTime()),
      updatedAt: new Date(document.updatedAt.getTime()),
    };
  }
}
