import type { Logger } from 'pino';
import { ValidationError } from '../errors.js';
import type { Message, MessageInput, MessageType } from '../message.js';
import type { StateManager } from '../state/manager.js';

/** What a handler gets beside the message. */
export interface AgentContext {
  /** The agent's name. */
  readonly agent: string;
  /** The message being handled. */
  readonly message: Message;
  /**
   * Sends from this agent: `sender` defaults to the agent's name, `correlationId` to the handled
   * message's, and the `traceparent` continues the handled message's trace.
   */
  send<P = Record<string, unknown>>(input: Omit<MessageInput<P>, 'sender'> & { sender?: string }): Promise<Message<P>>;
  /** Replies to the handled message (RESULT unless `type` says otherwise). */
  reply<P = Record<string, unknown>>(payload: P, options?: { type?: MessageType }): Promise<Message<P>>;
  /** Keeps the lease of the handled message for another `ms` (long work). */
  extendLease(ms: number): Promise<boolean>;
  /** The state manager wired into the bus (`new MessageBus({ state })`), if any. */
  readonly state: StateManager | undefined;
  /** Aborted when the bus closes or the lease on the handled message is lost. */
  readonly signal: AbortSignal;
  /** A child logger bound to this agent and message. */
  readonly log: Logger;
}

/** An agent: a name and a handler. Registered with `bus.registerAgent(agent.name, agent)`. */
export interface Agent<R = unknown> {
  readonly name: string;
  /** How many messages this agent handles at once (default 1). */
  readonly concurrency?: number;
  /**
   * Handles one message. Resolving acks it; for a TASK, a returned value other than
   * `undefined` is sent back to the sender as a RESULT (same correlation). Throwing retries
   * with backoff; after the last attempt a TASK's sender gets an ERROR reply.
   */
  handleMessage(message: Message, ctx: AgentContext): Promise<R> | R;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Checks an agent name: 1..128 of letters, digits, `.`, `_`, `:`, `-`, starting alphanumeric. */
export function validateAgentName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new ValidationError(
      `agent name must be 1..128 letters, digits, '.', '_', ':' or '-' starting with a letter or digit, got \`${String(name)}\``,
      { field: 'name' },
    );
  }
  return name;
}

/**
 * Declares an agent, checking its shape early so mistakes surface at definition, not at first message.
 *
 * @example
 * const echo = defineAgent({ name: 'echo', async handleMessage(msg) { return { echoed: msg.payload } } });
 * bus.registerAgent(echo.name, echo);
 */
export function defineAgent<R, A extends Agent<R>>(agent: A): A {
  validateAgentName(agent?.name);
  if (typeof agent.handleMessage !== 'function') {
    throw new ValidationError(`agent \`${agent.name}\` needs a handleMessage(message, ctx) function`, { field: 'handleMessage' });
  }
  const c = agent.concurrency;
  if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > 10_000)) {
    throw new ValidationError(`concurrency must be an integer 1..10000, got \`${String(c)}\``, { field: 'concurrency' });
  }
  return agent;
}
