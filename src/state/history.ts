/**
 * Reading the past and bringing it back: history pages, a document at a kept version,
 * snapshots and restoring one (a new version, never a rewrite). Internal; the `StateManager`
 * facade delegates here.
 */
import { DocumentNotFoundError, VersionNotFoundError } from '../errors.js';
import { checkOptionNames } from '../options.js';
import type { StateCore } from './core.js';
import type { Documents } from './documents.js';
import { DEFAULT_HISTORY_PAGE, HISTORY_OPTIONS, MAX_HISTORY_PAGE, type HistoryPageOptions, type RestoreOptions } from './inputs.js';
import { lineDiffStats, summarizeStats } from './merge.js';
import { makeSnapshot, verifySnapshot } from './snapshot.js';
import type { HistoryRange } from './store.js';
import type { DocumentState, Snapshot, StateChange } from './types.js';
import * as v from './validate.js';

export class History {
  #core: StateCore;
  #docs: Documents;

  constructor(core: StateCore, docs: Documents) {
    this.#core = core;
    this.#docs = docs;
  }

  /** See `StateManager.getStateHistory`. */
  async getStateHistory(documentId: string, options?: HistoryPageOptions): Promise<StateChange[]> {
    const id = v.id(documentId, 'documentId');
    const opts = v.optionsObject(options, 'getStateHistory options');
    checkOptionNames(opts, HISTORY_OPTIONS, 'getStateHistory options');
    const range: HistoryRange = { limit: v.optionalPositiveInteger(opts['limit'], 'limit', MAX_HISTORY_PAGE) ?? DEFAULT_HISTORY_PAGE };
    const before = v.optionalPositiveInteger(opts['before'], 'before');
    const after = v.optionalNonNegativeInteger(opts['after'], 'after');
    if (before !== undefined) range.before = before;
    if (after !== undefined) range.after = after;
    const store = await this.#core.s();
    const history = await store.getHistory(id, range);
    if (history.length === 0 && !(await store.getDocument(id))) throw new DocumentNotFoundError(id);
    return history;
  }

  /** See `StateManager.getDocumentAtVersion`. */
  async getDocumentAtVersion(documentId: string, version: number): Promise<DocumentState> {
    const id = v.id(documentId, 'documentId');
    const n = v.positiveInteger(version, 'version');
    const store = await this.#core.s();
    const record = await store.getVersion(id, n);
    if (!record) {
      const current = await store.getDocument(id);
      if (!current) throw new DocumentNotFoundError(id);
      const oldest = await store.oldestVersion(id);
      throw new VersionNotFoundError(id, n, oldest, current.version);
    }
    return { ...record, history: await this.#docs.windowAt(store, id, n) };
  }

  /** See `StateManager.snapshotState`. */
  async snapshotState(documentId: string, options?: { version?: number }): Promise<Snapshot> {
    const id = v.id(documentId, 'documentId');
    const opts = v.optionsObject(options, 'snapshotState options');
    const version = v.optionalPositiveInteger(opts['version'], 'version');
    if (version !== undefined) return makeSnapshot(await this.getDocumentAtVersion(id, version));
    const state = await this.#docs.getDocumentState(id);
    if (!state) throw new DocumentNotFoundError(id);
    return makeSnapshot(state);
  }

  /** See `StateManager.restoreSnapshot`. */
  async restoreSnapshot(snapshot: Snapshot, options?: RestoreOptions): Promise<DocumentState> {
    const snap = verifySnapshot(snapshot);
    const opts = v.optionsObject(options, 'restoreSnapshot options');
    const actor = opts['actor'] === undefined ? 'system' : v.nonEmptyString(opts['actor'], 'actor');
    const expectedVersion = v.optionalPositiveInteger(opts['expectedVersion'], 'expectedVersion');
    const store = await this.#core.s();
    const label = `restored snapshot of v${snap.version}`;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#docs.write(store, snap.documentId, actor, expectedVersion, false, (current) => ({
          content: snap.content,
          metadata: structuredClone(snap.metadata),
          action: 'restore',
          summary: `${label}: ${summarizeStats(lineDiffStats(current.content, snap.content))}`,
        }));
      } catch (err) {
        if (!(err instanceof DocumentNotFoundError) || expectedVersion !== undefined || attempt > 3) throw err;
      }
      const created = await this.#docs.create(
        store,
        snap.documentId,
        snap.content,
        structuredClone(snap.metadata),
        actor,
        'restore',
        `${label}: ${summarizeStats(lineDiffStats('', snap.content))}`,
      );
      if (created) return created;
    }
  }
}
