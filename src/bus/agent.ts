import type { Logger } from 'pino';
import { ValidationError } from '../errors.js';
import { checkMisspeltNames } from '../options.js';
import type { Message, MessageInput, MessageType } from '../message.js';
import type { StateManager } from '../state/manager.js';
import { isThenable } from './maybe.js';
import { checkSchemaOption, type InferInput, type InferOutput, markFinal, type SchemaLike, validateWith } from './schema.js';

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
   * Handles one message. Resolving acks it; for a message that asks for a reply (a TASK, or a
   * FEEDBACK sent by `request()`), a returned value other than `undefined` is sent back as a
   * RESULT (same correlation). Throwing retries with backoff; after the last attempt the asker
   * gets an ERROR reply (docs/CONTRACT.md, "Request and reply").
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
 * An agent whose payloads are typed by schemas (zod, valibot, arktype: any Standard Schema):
 * `input` types and checks the payload the handler gets, `output` types and checks what it returns.
 */
export interface TypedAgentDefinition<I extends SchemaLike | undefined, O extends SchemaLike | undefined, R> {
  readonly name: string;
  readonly concurrency?: number;
  /** Checked before the handler runs. A payload it refuses is not retried: see {@link defineAgent}. */
  readonly input?: I;
  /** Checked on the handler's return value (a failure counts as a handler failure, and is retried). */
  readonly output?: O;
  handleMessage(
    message: Message<InferOutput<I, Record<string, unknown>>>,
    ctx: AgentContext,
  ): Promise<O extends SchemaLike ? InferInput<O> : R> | (O extends SchemaLike ? InferInput<O> : R);
}

/** The agent `defineAgent` returns for a {@link TypedAgentDefinition}: its schemas stay readable. */
export type TypedAgent<I extends SchemaLike | undefined, O extends SchemaLike | undefined, R> = Agent<
  O extends SchemaLike ? InferOutput<O> : R
> & {
  readonly input: I;
  readonly output: O;
};

/**
 * Declares an agent, checking its shape early so mistakes surface at definition, not at first message.
 *
 * With `input` and/or `output` schemas (zod or any Standard Schema) the handler's `message.payload`
 * and its return value are typed from them and checked at the door:
 * - a payload the `input` schema refuses never reaches the handler and is not retried (a retry
 *   would be refused again): it is dead-lettered at once (reason `max_attempts`, the error naming
 *   the field) and, when the message asks for a reply (`request()`), the requester gets an ERROR
 *   reply at once, i.e. `request()` rejects with `RemoteError` whose payload carries
 *   `code: 'validation'` and the message naming the field;
 * - a return value the `output` schema refuses is a handler failure like a throw (retried with
 *   backoff: a model-backed handler may do better next time).
 *
 * @example
 * const echo = defineAgent({ name: 'echo', async handleMessage(msg) { return { echoed: msg.payload } } });
 * bus.registerAgent(echo.name, echo);
 *
 * @example
 * const Input = z.object({ text: z.string() });
 * const Output = z.object({ words: z.number() });
 * const counter = defineAgent({ name: 'counter', input: Input, output: Output, handleMessage: (m) => ({ words: m.payload.text.split(' ').length }) });
 */
export function defineAgent<I extends SchemaLike | undefined = undefined, O extends SchemaLike | undefined = undefined, R = unknown>(
  agent: TypedAgentDefinition<I, O, R> & ({ readonly input: I } | { readonly output: O }),
): TypedAgent<I, O, R>;
export function defineAgent<R, A extends Agent<R> & { readonly input?: undefined; readonly output?: undefined }>(agent: A): A;
export function defineAgent(agent: Agent & { input?: unknown; output?: unknown }): Agent {
  validateAgentName(agent?.name);
  if (typeof agent.handleMessage !== 'function') {
    throw new ValidationError(`agent \`${agent.name}\` needs a handleMessage(message, ctx) function`, { field: 'handleMessage' });
  }
  const c = agent.concurrency;
  if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > 10_000)) {
    throw new ValidationError(`concurrency must be an integer 1..10000, got \`${String(c)}\``, { field: 'concurrency' });
  }
  const schemas = checkSchemaOption({ input: agent.input, output: agent.output }, `agent \`${agent.name}\` input/output`);
  if (schemas?.input === undefined && schemas?.output === undefined) return agent;
  return { ...agent, handleMessage: checkedHandler(agent, schemas.input, schemas.output) };
}

/** `agent.handleMessage` behind its schemas (only agents with schemas pay for it). */
function checkedHandler(agent: Agent, input: SchemaLike | undefined, output: SchemaLike | undefined): Agent['handleMessage'] {
  const handle = agent.handleMessage.bind(agent);
  const checkOutput = (value: unknown): unknown =>
    output === undefined || value === undefined ? value : validateWith(output, value, 'result');
  return (message, ctx) => {
    let m = message;
    if (input !== undefined) {
      let payload: unknown;
      try {
        payload = validateWith(input, message.payload, 'payload');
      } catch (err) {
        throw markFinal(err as Error);
      }
      m = { ...message, payload: payload as Record<string, unknown> };
    }
    const result = handle(m, ctx);
    return isThenable(result) ? Promise.resolve(result).then(checkOutput) : checkOutput(result);
  };
}

/** Checks an agent given to `registerAgent(name, agent)`. */
export function checkRegisteredAgent(name: string, agent: Agent, fields: readonly string[]): void {
  if (agent === null || typeof agent.handleMessage !== 'function') {
    throw new ValidationError(`agent \`${name}\` needs a handleMessage(message, ctx) function`, { field: 'handleMessage' });
  }
  if (agent.name !== undefined && agent.name !== name) {
    throw new ValidationError(
      `registerAgent(\`${name}\`) was given the agent named \`${String(agent.name)}\`: register an agent under its own name (registerAgent(agent.name, agent))`,
      { field: 'name' },
    );
  }
  // Agents may carry fields of their own; only a near miss of a known one is a mistake.
  checkMisspeltNames(agent, fields, `agent \`${name}\``);
  const c = agent.concurrency;
  if (c !== undefined && (!Number.isInteger(c) || c < 1 || c > 10_000)) {
    throw new ValidationError(`concurrency must be an integer 1..10000, got \`${String(c)}\``, { field: 'concurrency' });
  }
}
