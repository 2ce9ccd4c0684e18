/**
 * The change feed as one manager sees it: watchers, the metrics (exact for its own writes,
 * refreshed from the store for others'), and telling its own commits from other writers'.
 * Internal; `StateManager.watch`, `metrics` and `refreshMetrics` delegate here.
 */
import { ClosedError, ValidationError } from '../errors.js';
import { copyEvent } from './copy.js';
import type { StateCore, StoreStats } from './core.js';
import type { StateSubscription, WatchTarget } from './inputs.js';
import { OwnCommits } from './own-commits.js';
import type { StateStore } from './store.js';
import type { ChangeEvent, StateMetrics } from './types.js';
import * as v from './validate.js';

interface Watcher {
  matches: (event: ChangeEvent) => boolean;
  handler: (event: ChangeEvent) => void;
  after: number;
}

export class ChangeFeed {
  #core: StateCore;
  #watchers = new Set<Watcher>();
  #lastRevision = 0;
  #stats: StoreStats = { documents: 0, workflows: 0, totalChanges: 0, sumOfVersions: 0 };
  #epoch = 0;
  /**
   * Telling this manager's own commits from other writers' on the change feed (own ones are
   * already counted in the metrics; others trigger a stats refresh). A commit is known by its
   * key (kind, id, new version or workflow revision), which exactly one commit can have; the
   * feed event may arrive before the commit's answer (see `OwnCommits`).
   */
  readonly own = new OwnCommits(() => this.#refreshStats());
  #refreshing = false;
  #refreshAgain = false;

  constructor(core: StateCore) {
    this.#core = core;
  }

  /** Takes the store's counts and feed position as the store opens. */
  async start(store: StateStore): Promise<void> {
    this.#stats = await store.stats();
    this.#lastRevision = Math.max(this.#lastRevision, await store.currentRevision());
  }

  /** See `StateManager.watch`. */
  watch(target: WatchTarget, handler: (event: ChangeEvent) => void): StateSubscription {
    if (this.#core.closed) throw new ClosedError('state manager');
    let matches: (event: ChangeEvent) => boolean;
    if (target === '*') matches = () => true;
    else if (typeof target === 'string') {
      const id = v.id(target, 'watch target');
      matches = (e) => e.kind === 'document' && e.id === id;
    } else if (v.isPlainObject(target)) {
      const id = v.id(target['workflowId'], 'workflowId');
      matches = (e) => e.kind === 'workflow' && e.id === id;
    } else {
      throw new ValidationError(`watch target must be a document id, { workflowId } or '*', got ${v.describe(target)}`, {
        field: 'target',
      });
    }
    const watcher: Watcher = { matches, handler: v.fn(handler, 'handler'), after: this.#lastRevision };
    this.#watchers.add(watcher);
    return {
      ready: this.#core.ready.then(() => undefined),
      unsubscribe: async () => {
        this.#watchers.delete(watcher);
      },
    };
  }

  /** Stops every watcher (on close). */
  clearWatchers(): void {
    this.#watchers.clear();
  }

  /** See `StateManager.metrics`. */
  metrics(): StateMetrics {
    return ChangeFeed.#toMetrics(this.#stats);
  }

  /** See `StateManager.refreshMetrics`. */
  async refreshMetrics(): Promise<StateMetrics> {
    const store = await this.#core.s();
    const epoch = this.#epoch;
    const stats = await store.stats();
    if (epoch === this.#epoch) this.#stats = stats;
    return ChangeFeed.#toMetrics(stats);
  }

  static #toMetrics(stats: StoreStats): StateMetrics {
    return {
      activeDocuments: stats.documents,
      activeWorkflows: stats.workflows,
      totalStateChanges: stats.totalChanges,
      averageDocumentVersion: stats.documents === 0 ? 0 : stats.sumOfVersions / stats.documents,
    };
  }

  /**
   * Own writes update the metrics at once (exactly), and their feed events are then skipped.
   * `feedRevision`: the change-feed revision of a document commit (workflow commits report the
   * workflow's own revision instead, which is no feed cursor).
   */
  noteOwnWrite(what: 'create' | 'update', kind: 'document' | 'workflow', feedRevision?: number): void {
    this.#epoch++;
    if (feedRevision !== undefined) this.#lastRevision = Math.max(this.#lastRevision, feedRevision);
    const s = this.#stats;
    s.totalChanges += 1;
    if (kind === 'document') {
      s.sumOfVersions += 1;
      if (what === 'create') s.documents += 1;
    } else if (what === 'create') s.workflows += 1;
  }

  /** The store's change-feed listener. */
  onChange(event: ChangeEvent): void {
    this.#lastRevision = Math.max(this.#lastRevision, event.revision);
    if (event.kind === 'document') this.#core.docCache?.saw(event.id, event.version);
    else this.#core.wfCache?.saw(event.id, event.version);
    if (!this.own.claim(event)) this.#refreshStats();
    for (const watcher of this.#watchers) {
      if (event.revision <= watcher.after || !watcher.matches(event)) continue;
      try {
        watcher.handler(copyEvent(event));
      } catch (err) {
        process.emitWarning(`a state watch handler threw: ${err instanceof Error ? err.message : String(err)}`, {
          code: 'CONCORD_WATCH_HANDLER',
        });
      }
    }
  }

  /** Folds other writers' changes into the metrics; coalesced, and discarded if an own write raced it. */
  #refreshStats(): void {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    void (async () => {
      try {
        for (let round = 0; round < 5; round++) {
          this.#refreshAgain = false;
          const store = this.#core.store;
          if (!store || this.#core.closed) return;
          const epoch = this.#epoch;
          const stats = await store.stats();
          if (epoch === this.#epoch) this.#stats = stats;
          else this.#refreshAgain = true;
          if (!this.#refreshAgain) return;
        }
      } catch {
        // Metrics are best effort; the next change or refreshMetrics() tries again.
      } finally {
        this.#refreshing = false;
      }
    })();
  }
}
