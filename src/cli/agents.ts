import type { MessageBus } from '../bus/bus.js';
import type { Message } from '../message.js';
import { ValidationError } from '../errors.js';
import { createDocumentAgents, DOCUMENT_AGENT_NAMES, type ModelConfig, type SkippedSource } from '../agents/index.js';

/** The agents of the document pipeline, in stage order. */
export const AGENT_NAMES: readonly string[] = DOCUMENT_AGENT_NAMES;

/** `CONCORD_MAX_SOURCE_BYTES`: the largest source file the agents read (default 8 MiB). */
export function maxSourceBytes(): number | undefined {
  const raw = process.env['CONCORD_MAX_SOURCE_BYTES'];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(`CONCORD_MAX_SOURCE_BYTES must be a positive integer (bytes), got \`${raw}\``, {
      field: 'CONCORD_MAX_SOURCE_BYTES',
    });
  }
  return n;
}

/** The warning printed for a source file the agents skip. */
export function skipWarning(s: SkippedSource): string {
  return `warning: skipped source ${s.source}: it ${s.reason}`;
}

/**
 * Registers the four document agents (over `sourcesDir`) on `bus`, or only `only` when given.
 * `onSkip` hears of each source file research will not read (default: a warning on stderr);
 * `model` makes writing and editing work through a chat model, streaming to `onToken`.
 */
export function registerDocumentAgents(
  bus: MessageBus,
  sourcesDir: string,
  options: {
    only?: string;
    onSkip?: (s: SkippedSource) => void;
    model?: ModelConfig;
    onToken?: (agent: 'writing' | 'editing', text: string, task: Message) => void;
  } = {},
): void {
  const limit = maxSourceBytes();
  const agents = createDocumentAgents({
    sourcesDir,
    onSkip: options.onSkip ?? ((s) => process.stderr.write(skipWarning(s) + '\n')),
    ...(limit !== undefined ? { maxSourceBytes: limit } : {}),
    ...(options.model ? { model: options.model } : {}),
    ...(options.onToken ? { onToken: options.onToken } : {}),
  });
  for (const agent of Object.values(agents)) {
    if (options.only === undefined || agent.name === options.only) bus.registerAgent(agent.name, agent);
  }
}
