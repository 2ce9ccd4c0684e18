import { ValidationError } from '../errors.js';
import { describe } from './validate.js';
import type { WorkflowState } from './types.js';

/**
 * Workflow rules as pure functions (docs/CONTRACT.md, StateManager): each takes a workflow and
 * returns the next one, so the rules are tested without a store and every store shares them.
 */

/** Checks a stage list: a non-empty array of unique non-empty strings. */
export function validateStages(stages: unknown): string[] {
  if (!Array.isArray(stages) || stages.length === 0) {
    throw new ValidationError(`stages must be a non-empty array of stage names, got ${describe(stages)}`, { field: 'stages' });
  }
  const seen = new Set<string>();
  for (const [i, stage] of stages.entries()) {
    if (typeof stage !== 'string' || stage.trim().length === 0) {
      throw new ValidationError(`stages[${i}] must be a non-empty string, got ${describe(stage)}`, { field: 'stages' });
    }
    if (seen.has(stage)) throw new ValidationError(`stages must be unique, \`${stage}\` appears twice`, { field: 'stages' });
    seen.add(stage);
  }
  return [...(stages as string[])];
}

/** A new workflow: no current stage, every stage pending, iteration 1. */
export function newWorkflow(workflowId: string, stages: string[], data: Record<string, unknown>, now: Date): WorkflowState {
  return {
    workflowId,
    stages: [...stages],
    stage: null,
    completedStages: [],
    pendingStages: [...stages],
    qualityScores: {},
    iteration: 1,
    data: structuredClone(data),
    createdAt: now,
    updatedAt: now,
  };
}

function knownStage(workflow: WorkflowState, stage: unknown): string {
  if (typeof stage !== 'string' || !workflow.stages.includes(stage)) {
    throw new ValidationError(
      `stage must be one of ${workflow.stages.map((s) => `\`${s}\``).join(', ')} (workflow \`${workflow.workflowId}\`), got ${describe(stage)}`,
      { field: 'stage' },
    );
  }
  return stage;
}

/** Keeps `names` in the workflow's stage order. */
function inStageOrder(workflow: WorkflowState, names: Iterable<string>): string[] {
  const set = new Set(names);
  return workflow.stages.filter((s) => set.has(s));
}

/**
 * Makes `stage` the current stage. Entering a completed stage is a revision loop: that stage
 * and every later completed stage (in the workflow's stage order) go back to pending, since
 * their work was based on what is now being redone, and `iteration` grows by exactly one for
 * the loop, however many stages it reopens. Entering the reopened later stages afterwards is
 * then ordinary progress, not another loop. Last quality scores are kept (they say why the
 * revision happened) until each stage completes again.
 *
 * @example
 * // stages a, b, c all completed at iteration 1
 * enterStage(w, 'b', now) // stage 'b', completed ['a'], pending ['b', 'c'], iteration 2
 */
export function enterStage(workflow: WorkflowState, stage: unknown, now: Date): WorkflowState {
  const name = knownStage(workflow, stage);
  const next = structuredClone(workflow);
  if (next.completedStages.includes(name)) {
    const reopened = new Set(next.stages.slice(next.stages.indexOf(name)));
    const completed = next.completedStages;
    next.completedStages = completed.filter((s) => !reopened.has(s));
    next.pendingStages = inStageOrder(next, [...next.pendingStages, ...completed.filter((s) => reopened.has(s))]);
    next.iteration += 1;
  }
  next.stage = name;
  next.updatedAt = now;
  return next;
}

/** Checks a quality score: a finite number in [0, 1]. */
export function validateQualityScore(score: unknown): number {
  if (typeof score !== 'number' || !Number.isFinite(score) || score < 0 || score > 1) {
    throw new ValidationError(`qualityScore must be a number in [0, 1], got ${describe(score)}`, { field: 'qualityScore' });
  }
  return score;
}

/**
 * Marks `stage` completed with `qualityScore`. Completing an already completed stage only
 * records the new score. The current stage is left as it is.
 */
export function completeStage(workflow: WorkflowState, stage: unknown, qualityScore: unknown, now: Date): WorkflowState {
  const name = knownStage(workflow, stage);
  const score = validateQualityScore(qualityScore);
  const next = structuredClone(workflow);
  next.completedStages = inStageOrder(next, [...next.completedStages, name]);
  next.pendingStages = next.pendingStages.filter((s) => s !== name);
  next.qualityScores[name] = score;
  next.updatedAt = now;
  return next;
}

/** Sets the workflow's free JSON data: shallow-merged into what is there, or replacing it. */
export function setWorkflowData(
  workflow: WorkflowState,
  data: Record<string, unknown>,
  mode: 'merge' | 'replace',
  now: Date,
): WorkflowState {
  const next = structuredClone(workflow);
  next.data = mode === 'replace' ? structuredClone(data) : { ...next.data, ...structuredClone(data) };
  next.updatedAt = now;
  return next;
}
