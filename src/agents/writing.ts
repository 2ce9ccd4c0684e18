/** The writing agent: drafts a cited document from passages, and revises it on feedback. */
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { ValidationError } from '../errors.js';
import { type Message, MessageType } from '../message.js';
import { write } from './revise.js';
import { type WritingResult, parseWritingTask } from './protocol.js';

/**
 * The writing agent. A TASK payload is a `WritingTask`: without `draft`/`feedback` it writes a first
 * draft, with both it revises the draft. A FEEDBACK message carrying the same payload (draft and
 * feedback required) is also revised, and answered with an explicit RESULT reply since the bus only
 * turns a TASK handler's return value into a reply. Other message types are ignored.
 */
export function createWritingAgent(options: { name?: string } = {}): Agent<WritingResult | undefined> {
  return defineAgent({
    name: options.name ?? 'writing',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<WritingResult | undefined> {
      if (msg.type !== MessageType.TASK && msg.type !== MessageType.FEEDBACK) return undefined;
      const task = parseWritingTask(msg.payload);
      if (msg.type === MessageType.FEEDBACK && (task.draft === undefined || task.feedback === undefined)) {
        throw new ValidationError('writing task: a FEEDBACK message must carry both `draft` and `feedback`', { field: 'feedback' });
      }
      const result = write(task);
      ctx?.log?.debug(
        { topic: task.topic, revision: task.feedback !== undefined, citations: result.citations.length, revisions: result.revisions.length },
        'writing: document written',
      );
      if (msg.type === MessageType.FEEDBACK) await ctx?.reply?.(result);
      return result;
    },
  });
}
