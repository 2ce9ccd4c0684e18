/** The research agent: finds the passages of local notes that best match a topic. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { type ResearchResult, parseResearchTask } from './protocol.js';
import { PassageIndex, loadSources, research } from './search.js';

/** Options of {@link createResearchAgent}. */
export interface ResearchAgentOptions {
  /** Directory of `.md` / `.txt` notes, read recursively. */
  sourcesDir: string;
  /** Agent name (default `research`). */
  name?: string;
  /** Keep the index after the first task (default true); false re-reads the notes on every task. */
  cache?: boolean;
}

/**
 * The research agent. Its TASK payload is a `ResearchTask`; it answers a `ResearchResult`.
 * The notes are indexed on the first task (a failed load is retried on the next one).
 *
 * @example
 * bus.registerAgent('research', createResearchAgent({ sourcesDir: 'samples/sources' }));
 * const { passages } = await CommunicationProtocol.requestResponse(bus, 'orchestrator', 'research', { topic: 'delivery guarantees' });
 */
export function createResearchAgent(options: ResearchAgentOptions): Agent<ResearchResult | undefined> {
  let index: Promise<PassageIndex> | undefined;
  const load = (): Promise<PassageIndex> => {
    if (!index || options.cache === false) {
      index = loadSources(options.sourcesDir).then((files) => PassageIndex.fromFiles(files));
      index.catch(() => (index = undefined));
    }
    return index;
  };
  return defineAgent({
    name: options.name ?? 'research',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<ResearchResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseResearchTask(msg.payload);
      const idx = await load();
      const passages = research(idx, task);
      ctx?.log?.debug({ topic: task.topic, passages: passages.length, indexed: idx.size }, 'research: passages found');
      return { passages, indexed: { files: idx.files, passages: idx.size } };
    },
  });
}
