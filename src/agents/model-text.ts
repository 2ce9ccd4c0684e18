/**
 * Model text over the bus: an agent process that writes through a model publishes what the model
 * streams, so the process that asked for the work (`concord run`) can show it although the model
 * runs elsewhere. docs/PROTOCOL.md §9 describes the topic and payload for agents in other languages.
 *
 * It rides the bus's own pub/sub: at most once, queue-less, nobody listening costs nothing. Text is
 * batched (a model streams a few characters at a time; one bus message each would be most of the
 * traffic) and publishing is best-effort: a failed publish is reported, never felt by the stage.
 */
import { defineAgent, type Agent, type AgentContext } from '../bus/agent.js';
import type { PublishInput } from '../bus/types.js';
import { ValidationError } from '../errors.js';
import { type Message, MessageType } from '../message.js';

/** Prefix of the topic model text is published on; the rest is the task's correlation id. */
export const MODEL_TEXT_TOPIC_PREFIX = 'model-text.';

/**
 * The topic text streamed for a task with this correlation id goes to. The orchestrator sends every
 * stage task with `correlationId` = the workflow id, so a run follows `modelTextTopic(workflowId)`.
 */
export function modelTextTopic(correlationId: string): string {
  return MODEL_TEXT_TOPIC_PREFIX + correlationId;
}

/** The payload of one model-text publication (a STATUS message on {@link modelTextTopic}). */
export interface ModelTextChunk {
  /** The agent the model writes for (`writing`, `editing`). */
  agent: string;
  /** Which model where (`name@host`), for the display; absent when the publisher does not say. */
  model?: string;
  /** The id of the task message being handled: one stream per task delivery. */
  requestId: string;
  /** 0, 1, 2, ... within the stream: a gap means a publication was lost (pub/sub is at most once). */
  seq: number;
  /** The text streamed since the previous chunk (may be empty on the last one). */
  text: string;
  /** How many pieces the model streamed into `text` (what the display counts as tokens). */
  tokens: number;
  /** True on the last chunk of the stream. */
  done: boolean;
}

/** Without control characters other than newline and tab: text from another process never drives the terminal. */
function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => (c === '\n' || c === '\t' ? c : ''));
}
const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Checks a publication's payload at the boundary (it may come from any process on the bus) and
 * strips control characters from its text and model label.
 */
export function parseModelTextChunk(payload: unknown): ModelTextChunk {
  const p = (payload ?? {}) as Record<string, unknown>;
  const fail = (field: string, expected: string): never => {
    throw new ValidationError(`model text: ${field} must be ${expected}, got \`${String(p[field])}\``, { field });
  };
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) fail('payload', 'an object');
  if (typeof p['agent'] !== 'string' || !AGENT_NAME.test(p['agent'])) fail('agent', 'an agent name');
  if (typeof p['text'] !== 'string') fail('text', 'a string');
  if (p['model'] !== undefined && typeof p['model'] !== 'string') fail('model', 'a string when present');
  if (typeof p['requestId'] !== 'string') fail('requestId', 'a string');
  if (!Number.isSafeInteger(p['seq']) || (p['seq'] as number) < 0) fail('seq', 'an integer >= 0');
  if (p['tokens'] !== undefined && (!Number.isSafeInteger(p['tokens']) || (p['tokens'] as number) < 0))
    fail('tokens', 'an integer >= 0 when present');
  if (p['done'] !== undefined && typeof p['done'] !== 'boolean') fail('done', 'a boolean when present');
  return {
    agent: p['agent'] as string,
    ...(typeof p['model'] === 'string' ? { model: printable(p['model']) } : {}),
    requestId: p['requestId'] as string,
    seq: p['seq'] as number,
    text: printable(p['text'] as string),
    tokens: (p['tokens'] as number | undefined) ?? 1,
    done: p['done'] === true,
  };
}

/** What the publisher needs of a bus (a `MessageBus` is one). */
export interface ModelTextBus {
  publish(input: PublishInput<ModelTextChunk>): Promise<unknown>;
}

/** Options of {@link ModelTextPublisher}. */
export interface ModelTextPublisherOptions {
  /** The model's label (`name@host`), sent with each chunk. */
  model?: string;
  /** Longest a piece waits before it is published, in ms (default 80). */
  flushMs?: number;
  /** Publish at once when this many characters wait (default 512). */
  maxChars?: number;
  /** Hears the first failed publish of each stream (the stage goes on; the text is lost). */
  onError?: (error: unknown, task: Message) => void;
}

interface Stream {
  readonly agent: string;
  readonly task: Message;
  seq: number;
  text: string;
  tokens: number;
  timer: NodeJS.Timeout | undefined;
  /** The publications so far, in order: each waits for the one before. */
  sent: Promise<void>;
  failed: boolean;
}

/**
 * Publishes the text a model streams while an agent handles a task, on
 * {@link modelTextTopic}(the task's correlation id), in batches.
 *
 * @example
 * const text = new ModelTextPublisher(bus, { model: 'qwen2.5:7b@127.0.0.1:11434' });
 * const agents = createDocumentAgents({ model, onToken: (agent, piece, task) => text.write(agent, task, piece) });
 * bus.registerAgent('writing', text.around(agents.writing));
 */
export class ModelTextPublisher {
  readonly #bus: ModelTextBus;
  readonly #options: ModelTextPublisherOptions;
  readonly #flushMs: number;
  readonly #maxChars: number;
  /** Open streams by task message id. */
  readonly #streams = new Map<string, Stream>();

  constructor(bus: ModelTextBus, options: ModelTextPublisherOptions = {}) {
    this.#bus = bus;
    this.#options = options;
    this.#flushMs = options.flushMs ?? 80;
    this.#maxChars = options.maxChars ?? 512;
  }

  /** Buffers `text` the model streamed for `agent` while it handles `task`. */
  write(agent: string, task: Message, text: string): void {
    let stream = this.#streams.get(task.id);
    if (stream === undefined) {
      stream = { agent, task, seq: 0, text: '', tokens: 0, timer: undefined, sent: Promise.resolve(), failed: false };
      this.#streams.set(task.id, stream);
    }
    stream.text += text;
    stream.tokens++;
    if (stream.text.length >= this.#maxChars) this.#flush(stream, false);
    else if (stream.timer === undefined) {
      const s = stream;
      stream.timer = setTimeout(() => this.#flush(s, false), this.#flushMs);
      // A pending flush never keeps the process alive: `end` publishes what is left.
      stream.timer.unref();
    }
  }

  /**
   * Publishes what is left for `task`, marked `done`, and resolves once every publication of its
   * stream went out (or failed). Nothing is published for a task no text was written for.
   */
  async end(task: Message): Promise<void> {
    const stream = this.#streams.get(task.id);
    if (stream === undefined) return;
    this.#streams.delete(task.id);
    this.#flush(stream, true);
    await stream.sent;
  }

  /**
   * `agent`, ending the stream of each task it handles when the handler is done, and before the
   * handler replies itself (writing answers a FEEDBACK so): the text is on the bus before the result.
   */
  around<R>(agent: Agent<R>): Agent<R> {
    return defineAgent({
      name: agent.name,
      ...(agent.concurrency !== undefined ? { concurrency: agent.concurrency } : {}),
      handleMessage: async (message: Message, ctx: AgentContext): Promise<R> => {
        try {
          return await agent.handleMessage(message, this.#endingBeforeReply(message, ctx));
        } finally {
          await this.end(message);
        }
      },
    });
  }

  #endingBeforeReply(task: Message, ctx: AgentContext): AgentContext {
    return {
      agent: ctx.agent,
      message: ctx.message,
      state: ctx.state,
      get signal() {
        return ctx.signal;
      },
      get log() {
        return ctx.log;
      },
      send: (input) => ctx.send(input),
      extendLease: (ms) => ctx.extendLease(ms),
      reply: async (payload, options) => {
        await this.end(task);
        return ctx.reply(payload, options);
      },
    };
  }

  #flush(stream: Stream, done: boolean): void {
    if (stream.timer !== undefined) clearTimeout(stream.timer);
    stream.timer = undefined;
    if (!done && stream.text === '') return;
    const payload: ModelTextChunk = {
      agent: stream.agent,
      ...(this.#options.model !== undefined ? { model: this.#options.model } : {}),
      requestId: stream.task.id,
      seq: stream.seq++,
      text: stream.text,
      tokens: stream.tokens,
      done,
    };
    stream.text = '';
    stream.tokens = 0;
    const correlationId = stream.task.correlationId ?? stream.task.id;
    stream.sent = stream.sent
      .then(() =>
        this.#bus.publish({
          type: MessageType.STATUS,
          sender: stream.agent,
          topic: modelTextTopic(correlationId),
          correlationId,
          payload,
        }),
      )
      .then(
        () => undefined,
        (err: unknown) => {
          if (stream.failed) return;
          stream.failed = true;
          this.#options.onError?.(err, stream.task);
        },
      );
  }
}
