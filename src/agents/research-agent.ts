/** The research agent: finds the passages of local notes that best match a topic. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { type ResearchResult, parseResearchTask } from './payloads.js';
import { PassageIndex, loadSources, research } from './passages.js';
import type { SkippedSource } from './sources.js';

/** Options of {@link createResearchAgent}. */
export interface ResearchAgentOptions {
  /** Directory of `.md` / `.txt` notes, read recursively. */
  sourcesDir: string;
  /** Agent name (default `research`). */
  name?: string;
  /** Keep the index after the first task (default true); false re-reads the notes on every task. */
  cache?: boolean;
  /** Largest source file read, in bytes (default 8 MiB); larger files are skipped with a warning. */
  maxSourceBytes?: number;
  /** Called once per skipped file when the notes are indexed (the CLI prints these). */
  onSkip?: (skipped: SkippedSource) => void;
}

/**
 * The research agent. Its TASK payload is a `ResearchTask`; it answers a `ResearchResult`.
 * The notes are indexed on the first task (a failed load is retried on the next one). Files it
 * will not read (see `readSource`) are listed in the result's `skipped`, logged as warnings and
 * passed to `onSkip`. Indexing stops between files when the delivery's signal aborts.
 *
 * @example
 * bus.registerAgent('research', createResearchAgent({ sourcesDir: 'samples/sources' }));
 * const { passages } = await CommunicationProtocol.requestResponse(bus, 'orchestrator', 'research', { topic: 'delivery guarantees' });
 */
export function createResearchAgent(options: ResearchAgentOptions): Agent<ResearchResult | undefined> {
  let index: Promise<{ index: PassageIndex; skipped: SkippedSource[] }> | undefined;
  const load = (ctx: AgentContext | undefined) => {
    if (!index || options.cache === false) {
      const skipped: SkippedSource[] = [];
      const signal = ctx?.signal;
      index = loadSources(options.sourcesDir, {
        ...(options.maxSourceBytes !== undefined ? { maxBytes: options.maxSourceBytes } : {}),
        ...(signal ? { signal } : {}),
        onSkip: (s) => {
          skipped.push(s);
          ctx?.log?.warn?.({ source: s.source, reason: s.reason }, `research: skipped ${s.source}: it ${s.reason}`);
          options.onSkip?.(s);
        },
      })
        .then((files) => PassageIndex.build(files, signal ? { signal } : {}))
        .then((idx) => ({ index: idx, skipped }));
      index.catch(() => (index = undefined));
    }
    return index;
  };
  return defineAgent({
    name: options.name ?? 'research',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<ResearchResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseResearchTask(msg.payload);
      const { index: idx, skipped } = await load(ctx);
      const passages = research(idx, task);
      ctx?.log?.debug({ topic: task.topic, passages: passages.length, indexed: idx.size }, 'research: passages found');
      return { passages, indexed: { files: idx.files, passages: idx.size }, ...(skipped.length ? { skipped } : {}) };
    },
  });
}
