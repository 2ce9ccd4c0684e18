import { ValidationError } from '../errors.js';
import { MessageType } from '../message.js';
import {
  DEFAULT_LIMIT,
  DEFAULT_WORDS,
  type EditingResult,
  type Passage,
  type ResearchResult,
  type VerificationResult,
  type WritingResult,
} from '../agents/payloads.js';
import type { Json, StageContext, StageResult, WorkflowDefinition } from './types.js';

/** Options of the document pipeline. */
export interface DocumentPipelineOptions {
  /** Verification score a document must reach; below it the writer revises (default 0.8). */
  threshold?: number;
  /** Rounds at most, first draft included (default 3). */
  maxIterations?: number;
  /** How long each agent may take to answer (default 60 000 ms). */
  timeoutMs?: number;
  /** Passages research returns (default 16). */
  passages?: number;
}

/** Name under which runs of this definition are stored (checked on resume). */
export const DOCUMENT_PIPELINE = 'document-pipeline';

/**
 * The run input the document pipeline reads from `StartOptions.input`:
 * `words` (target length), `requirements` (what the document must cover).
 */
export interface DocumentPipelineInput {
  words?: number;
  requirements?: string[];
}

function inputOf(ctx: StageContext): { topic: string; words: number; requirements: string[] } {
  const words = typeof ctx.input['words'] === 'number' ? ctx.input['words'] : DEFAULT_WORDS;
  const reqs = ctx.input['requirements'];
  const requirements = Array.isArray(reqs) ? reqs.filter((r): r is string => typeof r === 'string') : [];
  return { topic: ctx.topic, words, requirements };
}

function passagesOf(ctx: StageContext): Passage[] {
  const passages = ctx.outputs['research']?.output['passages'];
  if (!Array.isArray(passages) || passages.length === 0) {
    throw new ValidationError('the research stage recorded no passages', { field: 'reply' });
  }
  return passages as unknown as Passage[];
}

function reply<T>(stage: string, payload: Record<string, unknown>, check: (p: Record<string, unknown>) => boolean, expected: string): T {
  if (!check(payload)) throw new ValidationError(`${stage} agent replied without ${expected}`, { field: 'reply' });
  return payload as T;
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** Length score as verification computes it: 1 within ±15% of the target, 0 at ±65%. */
export function lengthScore(words: number, target: number): number {
  const off = Math.abs(words - target) / target;
  if (off <= 0.15) return 1;
  return Math.max(0, Math.min(1, 1 - (off - 0.15) / 0.5));
}

function json(value: unknown): Json {
  return JSON.parse(JSON.stringify(value)) as Json;
}

/**
 * The document pipeline: research → writing → editing → verification. Verification gates the
 * document at `threshold`: below it, its problems go back to the writer as FEEDBACK and writing,
 * editing and verification run again, at most `maxIterations` rounds in all.
 *
 * Stage scores: research, the share of the wanted passages found; writing, the share of its
 * citations that name a passage research found; editing, how close the length is to the target;
 * verification, the verification agent's own score (citations, coverage, length, structure).
 *
 * The run's input holds `words` and `requirements` (see `DocumentPipelineInput`).
 */
export function documentPipeline(options: DocumentPipelineOptions = {}): WorkflowDefinition {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const limit = options.passages ?? DEFAULT_LIMIT;
  return {
    name: DOCUMENT_PIPELINE,
    maxIterations: options.maxIterations ?? 3,
    stages: [
      {
        name: 'research',
        agent: 'research',
        timeoutMs,
        request(ctx) {
          const { topic, requirements } = inputOf(ctx);
          return { payload: { topic, ...(requirements.length ? { requirements } : {}), limit } };
        },
        result(payload): StageResult {
          const r = reply<ResearchResult>('research', payload, (p) => Array.isArray(p['passages']), 'passages');
          if (r.passages.length === 0) {
            // Not worth a retry: the sources say nothing on the topic.
            throw new ValidationError('research found no passage in the sources about this topic', { field: 'passages' });
          }
          const sources = [...new Set(r.passages.map((p) => p.source))].sort();
          return {
            output: { passages: json(r.passages), indexed: json(r.indexed), sources, skipped: json(r.skipped ?? []) },
            score: Math.min(1, r.passages.length / limit),
            metadata: { research: { passages: r.passages.length, sources } },
          };
        },
      },
      {
        name: 'writing',
        agent: 'writing',
        timeoutMs,
        request(ctx) {
          const { topic, words, requirements } = inputOf(ctx);
          const payload: Record<string, unknown> = { topic, requirements, words, passages: passagesOf(ctx) };
          if (ctx.feedback && ctx.document.content.trim() !== '') {
            payload['draft'] = ctx.document.content;
            payload['feedback'] = ctx.feedback.problems;
            return { payload, type: MessageType.FEEDBACK };
          }
          return { payload };
        },
        result(payload, ctx): StageResult {
          const r = reply<WritingResult>(
            'writing',
            payload,
            (p) => isString(p['content']) && Array.isArray(p['citations']),
            'content and citations',
          );
          const known = new Set(passagesOf(ctx).map((p) => p.id));
          const resolved = r.citations.filter((c) => known.has(c.passageId)).length;
          const score = r.citations.length === 0 ? 0 : resolved / r.citations.length;
          const output = { citations: r.citations.length, revisions: json(r.revisions ?? []) };
          if (ctx.feedback && r.content === ctx.document.content) {
            // A revision that changed nothing: another round would spin without progress.
            const notes = (r.revisions ?? []).filter((n) => /^(cannot|could not|no passage|found no|no unused)/u.test(n));
            return {
              output: { ...output, unchanged: true },
              score,
              stop: `the writer could not change the draft on the ${ctx.feedback.problems.length} problem${ctx.feedback.problems.length === 1 ? '' : 's'} verification sent back${notes.length ? ` (${notes.join('; ')})` : ''}`,
            };
          }
          return { content: r.content, output, score };
        },
      },
      {
        name: 'editing',
        agent: 'editing',
        timeoutMs,
        request(ctx) {
          const { topic, words, requirements } = inputOf(ctx);
          return { payload: { content: ctx.document.content, words, topic, requirements } };
        },
        result(payload, ctx): StageResult {
          const r = reply<EditingResult>(
            'editing',
            payload,
            (p) => isString(p['content']) && typeof p['words'] === 'number',
            'content and words',
          );
          const result: StageResult = {
            output: { changes: json(r.changes ?? []), words: r.words },
            score: lengthScore(r.words, inputOf(ctx).words),
          };
          // Nothing to edit is recorded as such (no changes), not as a new version identical to the last.
          if (r.content !== ctx.document.content) result.content = r.content;
          else result.output['nothingToEdit'] = true;
          return result;
        },
      },
      {
        name: 'verification',
        agent: 'verification',
        timeoutMs,
        threshold: options.threshold ?? 0.8,
        revise: 'writing',
        request(ctx) {
          const { topic, words, requirements } = inputOf(ctx);
          return { payload: { content: ctx.document.content, topic, requirements, words, passages: passagesOf(ctx) } };
        },
        result(payload, ctx): StageResult {
          const r = reply<VerificationResult>(
            'verification',
            payload,
            (p) => typeof p['score'] === 'number' && Array.isArray(p['problems']),
            'a score and problems',
          );
          // No rewrite makes notes on tea cover coffee: revising would only spin.
          const topic = r.problems.find((p) => p.kind === 'topic');
          return {
            ...(topic ? { stop: 'the sources do not cover the topic, and no rewrite can change that' } : {}),
            output: {
              scores: json(r.scores),
              words: r.words,
              terms: json(r.terms ?? []),
              problems: r.problems.length,
              draftVersion: ctx.document.version,
            },
            score: r.score,
            problems: json(r.problems) as Json[],
            metadata: { verification: { score: r.score, scores: json(r.scores), problems: r.problems.length } },
          };
        },
      },
    ],
  };
}
