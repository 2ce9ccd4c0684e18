import { RemoteError, RequestTimeoutError, ValidationError } from '../errors.js';
import type { WorkflowState } from '../state/types.js';
import type { StageDefinition, StageResult, WorkflowData, WorkflowDefinition } from './types.js';

// The orchestrator's rules as pure functions: what a workflow definition and a stage's result
// must look like, which failures are worth another attempt, and the shape of its stored data.
// The orchestrator (orchestrator.ts) runs workflows; everything here is tested without a bus.

/** Reads the orchestrator's data out of a workflow state, checking it is one of ours. */
export function readData(wf: WorkflowState): WorkflowData {
  const data = wf.data as Partial<WorkflowData> | undefined;
  if (!data || typeof data.definition !== 'string' || typeof data.documentId !== 'string') {
    throw new ValidationError(`workflow \`${wf.workflowId}\` was not started by the orchestrator (its data has no definition)`);
  }
  return structuredClone(data) as WorkflowData;
}

export function toRecord(data: WorkflowData): Record<string, unknown> {
  return JSON.parse(JSON.stringify(data)) as Record<string, unknown>;
}

export function checkResult(stage: StageDefinition, result: StageResult): void {
  if (typeof result.score !== 'number' || !(result.score >= 0 && result.score <= 1)) {
    throw new ValidationError(`stage \`${stage.name}\`: score must be a number in [0, 1], got \`${String(result.score)}\``, {
      field: 'score',
    });
  }
}

/**
 * Failures worth another request: the agent answered with an error, did not answer, or sent a
 * reply the stage could not read (a `ValidationError` on field `reply` or `score`).
 */
export function isRetryable(err: unknown): boolean {
  return (
    err instanceof RemoteError ||
    err instanceof RequestTimeoutError ||
    (err instanceof ValidationError && (err.field === 'score' || err.field === 'reply'))
  );
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function validateDefinition(def: WorkflowDefinition): void {
  if (!def || typeof def.name !== 'string' || def.name === '')
    throw new ValidationError('workflow definition needs a name', { field: 'name' });
  if (!Array.isArray(def.stages) || def.stages.length === 0) {
    throw new ValidationError(`workflow \`${def.name}\` needs at least one stage`, { field: 'stages' });
  }
  if (!Number.isInteger(def.maxIterations) || def.maxIterations < 1) {
    throw new ValidationError(`maxIterations must be an integer >= 1, got \`${String(def.maxIterations)}\``, { field: 'maxIterations' });
  }
  const names = def.stages.map((s) => s.name);
  const seen = new Set<string>();
  for (const [i, s] of def.stages.entries()) {
    if (typeof s.name !== 'string' || s.name === '') throw new ValidationError(`stage ${i + 1} needs a name`, { field: 'stages' });
    if (seen.has(s.name)) throw new ValidationError(`stage \`${s.name}\` appears twice`, { field: 'stages' });
    seen.add(s.name);
    if (typeof s.agent !== 'string' || s.agent === '') throw new ValidationError(`stage \`${s.name}\` needs an agent`, { field: 'agent' });
    if (s.threshold !== undefined && !(s.threshold >= 0 && s.threshold <= 1)) {
      throw new ValidationError(`stage \`${s.name}\`: threshold must be in [0, 1], got \`${s.threshold}\``, { field: 'threshold' });
    }
    if (s.revise !== undefined) {
      const target = names.indexOf(s.revise);
      if (target < 0 || target > i) {
        throw new ValidationError(`stage \`${s.name}\` revises \`${s.revise}\`, which is not an earlier stage`, { field: 'revise' });
      }
      if (s.threshold === undefined) {
        throw new ValidationError(`stage \`${s.name}\` revises \`${s.revise}\` but has no threshold`, { field: 'threshold' });
      }
    }
  }
}

/** Stages re-run each round: from the earliest revision target to the last stage that revises. */
export function loopStages(def: WorkflowDefinition): Set<string> {
  const names = def.stages.map((s) => s.name);
  let first = Infinity;
  let last = -1;
  for (const [i, s] of def.stages.entries()) {
    if (s.revise === undefined) continue;
    first = Math.min(first, names.indexOf(s.revise));
    last = Math.max(last, i);
  }
  return new Set(last < 0 ? [] : names.slice(first, last + 1));
}

/** A lowercase, dash-separated slug of at most `max` characters, cut at a word boundary. */
export function slugify(text: string, max = 48): string {
  const slug = text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (slug.length <= max) return slug || 'untitled';
  const cut = slug.slice(0, max);
  const dash = cut.lastIndexOf('-');
  return (dash > max / 2 ? cut.slice(0, dash) : cut).replace(/-+$/g, '') || 'untitled';
}

export function shortId(): string {
  return Date.now().toString(36).slice(-4) + Math.random().toString(36).slice(2, 6);
}
