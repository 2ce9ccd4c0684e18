/** The editing agent: removes repeats, normalises headings, enforces the length. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { editDocument } from './edits.js';
import type { ChatModel, ModelConfig } from './model.js';
import { editWithModel } from './model-writer.js';
import { type EditingResult, parseEditingTask } from './payloads.js';
import { chatModel } from './writing-agent.js';

/** Options of {@link createEditingAgent}. */
export interface EditingAgentOptions {
  name?: string;
  /** A chat model that edits the wording first (the deterministic editor runs after it). */
  model?: ModelConfig | ChatModel;
  /** Each piece of text the model streams, as it arrives, with the task it edits for. */
  onToken?: (text: string, task: Message) => void;
}

/** The editing agent. Its TASK payload is an `EditingTask`; it answers an `EditingResult`. */
export function createEditingAgent(options: EditingAgentOptions = {}): Agent<EditingResult | undefined> {
  const model = chatModel(options.model);
  const onToken = options.onToken;
  return defineAgent({
    name: options.name ?? 'editing',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<EditingResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseEditingTask(msg.payload);
      const edit: { words?: number; topic?: string; requirements?: string[] } = {};
      if (task.words !== undefined) edit.words = task.words;
      if (task.topic !== undefined) edit.topic = task.topic;
      if (task.requirements !== undefined) edit.requirements = task.requirements;
      const result = model
        ? await editWithModel(task.content, model, {
            ...edit,
            ...(ctx?.signal ? { signal: ctx.signal } : {}),
            ...(onToken ? { onToken: (text: string) => onToken(text, msg) } : {}),
          })
        : editDocument(task.content, edit);
      ctx?.log?.debug({ changes: result.changes.length, words: result.words }, 'editing: document edited');
      return result;
    },
  });
}
