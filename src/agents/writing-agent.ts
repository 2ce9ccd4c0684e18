/** The writing agent: drafts a cited document from passages, and revises it on feedback. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { ValidationError } from '../errors.js';
import { type Message, MessageType } from '../message.js';
import { type ChatModel, type ModelConfig, createChatModel } from './model.js';
import { writeWithModel } from './model-writer.js';
import { write } from './revise.js';
import { type WritingResult, parseWritingTask } from './payloads.js';

/** Options of {@link createWritingAgent}. */
export interface WritingAgentOptions {
  name?: string;
  /**
   * A chat model to write with (an OpenAI-compatible endpoint, or any `ChatModel`). Without one the
   * agent writes offline and deterministically from the passages' own sentences.
   */
  model?: ModelConfig | ChatModel;
  /** Each piece of text the model streams, as it arrives, with the task it writes for (for a progress display). */
  onToken?: (text: string, task: Message) => void;
}

/** A `ChatModel` from a configuration, or the model itself. */
export function chatModel(model: ModelConfig | ChatModel | undefined): ChatModel | undefined {
  if (model === undefined) return undefined;
  return 'complete' in model ? model : createChatModel(model);
}

/**
 * The writing agent. A TASK payload is a `WritingTask`: without `draft`/`feedback` it writes a first
 * draft, with both it revises the draft. A FEEDBACK message carrying the same payload (draft and
 * feedback required) is also revised, and answered with an explicit RESULT reply since the bus only
 * turns a TASK handler's return value into a reply. Other message types are ignored.
 */
export function createWritingAgent(options: WritingAgentOptions = {}): Agent<WritingResult | undefined> {
  const model = chatModel(options.model);
  const onToken = options.onToken;
  return defineAgent({
    name: options.name ?? 'writing',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<WritingResult | undefined> {
      if (msg.type !== MessageType.TASK && msg.type !== MessageType.FEEDBACK) return undefined;
      const task = parseWritingTask(msg.payload);
      if (msg.type === MessageType.FEEDBACK && (task.draft === undefined || task.feedback === undefined)) {
        throw new ValidationError('writing task: a FEEDBACK message must carry both `draft` and `feedback`', { field: 'feedback' });
      }
      const result = model
        ? await writeWithModel(task, model, {
            ...(ctx?.signal ? { signal: ctx.signal } : {}),
            ...(onToken ? { onToken: (text: string) => onToken(text, msg) } : {}),
          })
        : write(task);
      ctx?.log?.debug(
        {
          topic: task.topic,
          revision: task.feedback !== undefined,
          citations: result.citations.length,
          revisions: result.revisions.length,
          ...(model ? { model: model.label } : {}),
        },
        'writing: document written',
      );
      if (msg.type === MessageType.FEEDBACK) await ctx?.reply?.(result);
      return result;
    },
  });
}
