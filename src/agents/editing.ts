/** The editing agent: removes repeats, normalises headings, enforces the length. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { editDocument } from './edit.js';
import { type EditingResult, parseEditingTask } from './protocol.js';

/** The editing agent. Its TASK payload is an `EditingTask`; it answers an `EditingResult`. */
export function createEditingAgent(options: { name?: string } = {}): Agent<EditingResult | undefined> {
  return defineAgent({
    name: options.name ?? 'editing',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<EditingResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseEditingTask(msg.payload);
      const options: { words?: number; topic?: string; requirements?: string[] } = {};
      if (task.words !== undefined) options.words = task.words;
      if (task.topic !== undefined) options.topic = task.topic;
      if (task.requirements !== undefined) options.requirements = task.requirements;
      const result = editDocument(task.content, options);
      ctx?.log?.debug({ changes: result.changes.length, words: result.words }, 'editing: document edited');
      return result;
    },
  });
}
