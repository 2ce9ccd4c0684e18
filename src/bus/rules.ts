import { ValidationError } from '../errors.js';
import { decodeMessage, MAX_NAME_LENGTH, type Message, MessageType } from '../message.js';
import type { DeadLetter } from './transport.js';

// Small pure rules of the bus: who gets a reply, what a failure looks like in a payload or a dead
// letter, what a redrive enqueues, and the checks of numeric options.

/**
 * Whether a handler's outcome goes back to the sender as a RESULT or ERROR: every TASK, and a
 * FEEDBACK sent by `request` (it carries the requester's reply inbox).
 */
export function asksForReply(m: Message): boolean {
  return m.type === MessageType.TASK || (m.type === MessageType.FEEDBACK && m.headers['replyTo'] !== undefined);
}
/** A failure as the text a dead letter keeps. Never throws (dead-lettering must not): whatever was thrown. */
export function errorText(error: unknown): string {
  try {
    if (error instanceof Error) return error.message || error.name;
    if (error === undefined) return 'nacked';
    return typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error));
  } catch {
    try {
      return String(error);
    } catch {
      return 'an error that cannot be shown';
    }
  }
}

/** How long a redrive holds its claim on a letter before another may take it (it settles far sooner). */
export const REDRIVE_CLAIM_MS = 30_000;

/**
 * The message a redrive enqueues: the letter's, restarted (attempt 0, no ttl); or, when the
 * letter holds a stand-in (its `raw` field), the message its raw bytes decode to.
 */
export function redriveMessage(letter: DeadLetter): Message {
  let original = letter.message;
  if (letter.raw !== undefined || letter.reason === 'malformed') {
    try {
      original = decodeMessage(letter.raw);
    } catch (err) {
      throw new ValidationError(
        `dead letter ${letter.message.id} cannot be redriven: its raw bytes are not a message (${(err as Error).message}); ` +
          'it stays in the dead-letter queue, with its raw bytes (getDeadLetters)',
        { field: 'id', cause: err },
      );
    }
  }
  const { ttlMs: _ttl, ...rest } = original;
  return { ...rest, attempt: 0 };
}

export function errorPayload(error: unknown, attempts: number): Record<string, unknown> {
  const payload: Record<string, unknown> = { message: errorText(error), attempts };
  if (error instanceof Error) {
    payload['name'] = error.name;
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') payload['code'] = code;
  }
  return payload;
}

/** A handler's return value as a reply payload: objects and arrays as they are, anything else as `{ value }`. */
export function resultPayload(result: unknown): Record<string, unknown> {
  return result !== null && typeof result === 'object' ? (result as Record<string, unknown>) : { value: result };
}

export function requirePositive(field: string, value: unknown, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new ValidationError(`${field} must be a finite number ${allowZero ? '>= 0' : '> 0'}, got \`${String(value)}\``, { field });
  }
  return value;
}

export function requireTopic(topic: unknown): string {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_NAME_LENGTH) {
    throw new ValidationError(`topic must be a non-empty string of at most ${MAX_NAME_LENGTH} characters, got \`${String(topic)}\``, {
      field: 'topic',
    });
  }
  return topic;
}
