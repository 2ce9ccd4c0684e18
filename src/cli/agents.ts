import type { MessageBus } from '../bus/bus.js';
import { createDocumentAgents, DOCUMENT_AGENT_NAMES } from '../agents/index.js';

/** The agents of the document pipeline, in stage order. */
export const AGENT_NAMES: readonly string[] = DOCUMENT_AGENT_NAMES;

/** Registers the four document agents (over `sourcesDir`) on `bus`, or only `only` when given. */
export function registerDocumentAgents(bus: MessageBus, sourcesDir: string, only?: string): void {
  const agents = createDocumentAgents({ sourcesDir });
  for (const agent of Object.values(agents)) {
    if (only === undefined || agent.name === only) bus.registerAgent(agent.name, agent);
  }
}
