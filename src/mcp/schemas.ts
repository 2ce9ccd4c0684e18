import * as z from 'zod';
import { DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_PRIORITY, MessageType } from '../index.js';
import { MAX_NAME_LENGTH } from '../message.js';
import { MAX_ID_LENGTH } from '../state/validate.js';

/**
 * Tool input schemas. Each field's JSON Schema (what an MCP client shows the model) is built from
 * the library's own constants, but its VALUE is checked by the library itself (`bus.send`,
 * `state.updateDocumentContent`, ...): zod here only requires the field to be present, so a bad
 * value comes back as the library's `ValidationError`, with its `code` and its message, never as
 * a second, hand-written rule that could drift from the first.
 */

/**
 * The bus's priority range. `validatePriority` (src/message.ts) holds it as literals and exports
 * no constants; test/mcp/schemas.test.ts checks that the library accepts exactly this range.
 */
export const PRIORITY_MIN = 0;
export const PRIORITY_MAX = 10;

/** The message types, in the library's order. */
export const MESSAGE_TYPES: readonly string[] = Object.values(MessageType);

type JsonSchemaMeta = Record<string, unknown> & { description: string };

/** A required field advertised as `meta` and checked by the library. */
function checked(meta: JsonSchemaMeta): z.ZodUnknown {
  return z.unknown().meta(meta);
}

/** An optional field advertised as `meta` and checked by the library. */
function optionalChecked(meta: JsonSchemaMeta): z.ZodOptional<z.ZodUnknown> {
  return z.unknown().meta(meta).optional();
}

const name = (description: string) => ({ type: 'string', minLength: 1, maxLength: MAX_NAME_LENGTH, description });
const id = (description: string) => ({ type: 'string', minLength: 1, maxLength: MAX_ID_LENGTH, description });

const recipient = checked(name('the agent to send to (its registered name)'));
const payload = checked({
  type: 'object',
  description: `the message body: a JSON object (or array), at most ${DEFAULT_MAX_PAYLOAD_BYTES} bytes as JSON unless the bus says otherwise`,
});
const priority = optionalChecked({
  type: 'integer',
  minimum: PRIORITY_MIN,
  maximum: PRIORITY_MAX,
  default: DEFAULT_PRIORITY,
  description: `${PRIORITY_MIN}..${PRIORITY_MAX}, higher is delivered first`,
});
const correlationId = optionalChecked(name('links the messages of one conversation or workflow'));
const headers = optionalChecked({
  type: 'object',
  additionalProperties: { type: 'string' },
  description: 'string extras carried with the message (e.g. traceparent)',
});
const ttlMs = optionalChecked({
  type: 'number',
  exclusiveMinimum: 0,
  description: 'dead-letter the message (reason `expired`) if not delivered within this many ms',
});
const messageId = checked(name('the id of a message this session received with receive_message and has not settled yet'));

export const sendMessageInput = {
  recipient,
  type: optionalChecked({ type: 'string', enum: [...MESSAGE_TYPES], default: MessageType.TASK, description: 'the kind of message' }),
  payload,
  priority,
  correlationId,
  headers,
  ttlMs,
  id: optionalChecked(name('your own id for the message: a second send with the same id inside the dedupe window is a no-op')),
};

export const requestInput = {
  recipient,
  payload,
  type: optionalChecked({
    type: 'string',
    enum: [MessageType.TASK, MessageType.FEEDBACK],
    default: MessageType.TASK,
    description: 'task, or feedback for a revision round',
  }),
  timeoutMs: optionalChecked({
    type: 'number',
    exclusiveMinimum: 0,
    description: 'how long to wait for the reply (default: the bus default, 30000); keep it under your MCP client request timeout',
  }),
  priority,
  correlationId,
  headers,
  ttlMs,
};

export const receiveInput = {
  timeoutMs: optionalChecked({
    type: 'number',
    minimum: 0,
    description:
      'how long to block waiting for a message (default 30000; 0 returns at once); keep it under your MCP client request timeout',
  }),
  leaseMs: optionalChecked({
    type: 'number',
    exclusiveMinimum: 0,
    description: 'how long the message is yours before it goes back to the queue for another attempt (default: the bus lease)',
  }),
};

export const ackInput = { messageId };

export const nackInput = {
  messageId,
  error: optionalChecked({ type: 'string', description: 'why it failed (kept in the dead letter if this was the last attempt)' }),
  delayMs: optionalChecked({ type: 'number', minimum: 0, description: 'retry after this many ms (default: the bus backoff)' }),
};

export const extendLeaseInput = {
  messageId,
  leaseMs: checked({ type: 'number', exclusiveMinimum: 0, description: 'keep the message for this many more ms from now' }),
};

export const replyInput = {
  messageId,
  payload,
  type: optionalChecked({
    type: 'string',
    enum: [MessageType.RESULT, MessageType.ERROR, MessageType.FEEDBACK, MessageType.STATUS],
    default: MessageType.RESULT,
    description: "result, or error to make the requester's request fail with the payload",
  }),
  ack: optionalChecked({ type: 'boolean', default: true, description: 'also ack the message (default true)' }),
};

export const publishInput = {
  type: checked({ type: 'string', enum: [...MESSAGE_TYPES], description: 'the kind of message (also the topic unless `topic` is given)' }),
  payload,
  topic: optionalChecked(name('a custom topic; subscribers of it (and of `*`) get the publication')),
  priority,
  correlationId,
  headers,
};

export const deadLettersInput = {
  limit: optionalChecked({ type: 'integer', minimum: 1, description: 'at most this many, oldest first' }),
};

const documentId = checked(id('the document id'));
const workflowId = checked(id('the workflow id'));
const version = (description: string) => ({ type: 'integer', minimum: 1, description });

export const createDocumentInput = {
  documentId,
  topic: checked({ type: 'string', minLength: 1, description: 'what the document is about (kept in its metadata)' }),
  content: optionalChecked({ type: 'string', description: 'initial content (default empty)' }),
  requirements: optionalChecked({ type: ['array', 'object'], description: 'what the document must satisfy: strings, or a JSON object' }),
  context: optionalChecked({ type: 'object', description: 'free JSON context for the agents' }),
};

export const readDocumentInput = {
  documentId,
  version: optionalChecked(version('an older version to read (default: the current one)')),
};

export const updateDocumentInput = {
  documentId,
  content: checked({ type: 'string', description: 'the whole new content' }),
  expectedVersion: optionalChecked(
    version('the version your edit is based on: if the document moved on, you get a `state_conflict` error with the current content'),
  ),
  merge: optionalChecked({
    type: 'boolean',
    description: 'with expectedVersion: three-way merge your edit onto the current version when the edits do not overlap',
  }),
  summary: optionalChecked({ type: 'string', description: 'a note for the history entry' }),
};

export const historyInput = {
  documentId,
  limit: optionalChecked({ type: 'integer', minimum: 1, description: 'page size: the most recent entries (default 100)' }),
  before: optionalChecked({ type: 'integer', minimum: 1, description: 'only versions below this one (the page before it)' }),
};

export const diffInput = {
  documentId,
  fromVersion: checked(version('the older version')),
  toVersion: optionalChecked(version('the newer version (default: the current one)')),
};

export const readWorkflowInput = { workflowId };

export const advanceWorkflowInput = {
  workflowId,
  stage: checked({ type: 'string', minLength: 1, description: "one of the workflow's stages" }),
  action: optionalChecked({
    type: 'string',
    enum: ['enter', 'complete'],
    default: 'enter',
    description: 'enter the stage (re-entering a completed one starts a revision loop), or complete it with a qualityScore',
  }),
  qualityScore: optionalChecked({ type: 'number', minimum: 0, maximum: 1, description: "with action complete: the stage's quality, 0..1" }),
};
