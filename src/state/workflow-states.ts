/**
 * Workflows as stored: create, read, and every change as a compare-and-swap on the workflow's
 * revision, retried on races. The stage rules themselves are pure functions in workflow.ts.
 * Internal; the `StateManager` facade delegates here.
 */
import { ConcordError, ValidationError, WorkflowExistsError, WorkflowNotFoundError } from '../errors.js';
import type { VersionedCache } from './cache.js';
import type { ChangeFeed } from './change-feed.js';
import { MAX_WRITE_ATTEMPTS, raceBackoff, type StateCore } from './core.js';
import type { CreateWorkflowInput } from './inputs.js';
import type { OwnCommits } from './own-commits.js';
import type { StateStore, WorkflowCommitResult, WorkflowRecord } from './store.js';
import type { WorkflowState } from './types.js';
import * as v from './validate.js';
import * as wf from './workflow-rules.js';

export class WorkflowStates {
  #core: StateCore;
  #feed: ChangeFeed;
  #wfCache: VersionedCache<WorkflowRecord> | null;
  #own: OwnCommits;

  constructor(core: StateCore, feed: ChangeFeed) {
    this.#core = core;
    this.#feed = feed;
    this.#wfCache = core.wfCache;
    this.#own = feed.own;
  }

  /** See `StateManager.createWorkflowState`. */
  async createWorkflowState(input: CreateWorkflowInput): Promise<WorkflowState> {
    const req = v.requestObject(input, 'createWorkflowState');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stages = wf.validateStages(req['stages']);
    const data = req['data'] === undefined ? {} : v.jsonObject(req['data'], 'data');
    const store = await this.#core.s();
    const record: WorkflowRecord = { ...wf.newWorkflow(workflowId, stages, data, new Date()), revision: 0 };
    const own = this.#own.begin('workflow', workflowId, 1);
    let result: WorkflowCommitResult | undefined;
    try {
      result = await store.commitWorkflow(record, null);
    } finally {
      this.#own.end(own, result?.ok === true);
    }
    if (!result.ok) throw new WorkflowExistsError(workflowId);
    return this.#workflowCommitted({ ...record, revision: result.revision }, true);
  }

  /** See `StateManager.getWorkflowState`. */
  async getWorkflowState(workflowId: string): Promise<WorkflowState | null> {
    const id = v.id(workflowId, 'workflowId');
    const record = await this.#loadWorkflow(await this.#core.s(), id, true);
    return record ? this.#publicWorkflow(record) : null;
  }

  /** See `StateManager.updateStage`. */
  async updateStage(input: { workflowId: string; stage: string }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'updateStage');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stage = v.nonEmptyString(req['stage'], 'stage');
    return this.#updateWorkflow(workflowId, (w) => wf.enterStage(w, stage, new Date()));
  }

  /** See `StateManager.completeStage`. */
  async completeStage(input: { workflowId: string; stage: string; qualityScore: number }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'completeStage');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const stage = v.nonEmptyString(req['stage'], 'stage');
    const score = wf.validateQualityScore(req['qualityScore']);
    return this.#updateWorkflow(workflowId, (w) => wf.completeStage(w, stage, score, new Date()));
  }

  /** See `StateManager.updateWorkflowData`. */
  async updateWorkflowData(input: {
    workflowId: string;
    data: Record<string, unknown>;
    mode?: 'merge' | 'replace';
  }): Promise<WorkflowState> {
    const req = v.requestObject(input, 'updateWorkflowData');
    const workflowId = v.id(req['workflowId'], 'workflowId');
    const data = v.jsonObject(req['data'], 'data');
    const mode = req['mode'] ?? 'merge';
    if (mode !== 'merge' && mode !== 'replace') {
      throw new ValidationError(`mode must be \`merge\` or \`replace\`, got ${v.describe(mode)}`, { field: 'mode' });
    }
    return this.#updateWorkflow(workflowId, (w) => wf.setWorkflowData(w, data, mode, new Date()));
  }

  async #loadWorkflow(store: StateStore, workflowId: string, useCache: boolean): Promise<WorkflowRecord | null> {
    if (useCache) {
      const cached = this.#wfCache?.get(workflowId);
      if (cached) return structuredClone(cached);
    }
    const record = await store.getWorkflow(workflowId);
    if (record) this.#wfCache?.put(workflowId, record.revision, structuredClone(record));
    return record;
  }

  /** Read-modify-write of a workflow with compare-and-swap on its revision, retried on races. */
  async #updateWorkflow(workflowId: string, mutate: (w: WorkflowState) => WorkflowState): Promise<WorkflowState> {
    const store = await this.#core.s();
    let current = await this.#loadWorkflow(store, workflowId, true);
    for (let attempt = 1; ; attempt++) {
      if (!current) throw new WorkflowNotFoundError(workflowId);
      const { revision, ...state } = current;
      const next: WorkflowRecord = { ...mutate(state), revision };
      const own = this.#own.begin('workflow', workflowId, revision + 1);
      let result: WorkflowCommitResult | undefined;
      try {
        result = await store.commitWorkflow(next, revision);
      } finally {
        this.#own.end(own, result?.ok === true);
      }
      if (result.ok) return this.#workflowCommitted({ ...next, revision: result.revision }, false);
      this.#wfCache?.delete(workflowId);
      if (result.current) this.#wfCache?.saw(workflowId, result.current.revision);
      if (attempt >= MAX_WRITE_ATTEMPTS) {
        throw new ConcordError(
          'write_contention',
          `workflow \`${workflowId}\` kept changing under this write: gave up after ${attempt} attempts`,
        );
      }
      current = result.current;
      await raceBackoff(attempt);
    }
  }

  #workflowCommitted(record: WorkflowRecord, created: boolean): WorkflowState {
    this.#feed.noteOwnWrite(created ? 'create' : 'update', 'workflow');
    this.#wfCache?.put(record.workflowId, record.revision, structuredClone(record));
    return this.#publicWorkflow(record);
  }

  #publicWorkflow(record: WorkflowRecord): WorkflowState {
    const { revision: _revision, ...state } = structuredClone(record);
    return state;
  }
}
