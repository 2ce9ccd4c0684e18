import { ValidationError } from '../../errors.js';
import {
  DEFAULT_PRIORITY,
  MessageType,
  decodeMessage,
  encodeMessage,
  isValidName,
  newId,
  parseWireTimestamp,
  type Message,
} from '../../message.js';
import type { DeadLetter, DeadLetterReason } from '../../bus/transport.js';

// The stored formats of the Redis transport that are not Lua's business: a queue's stored body
// and a dead letter's JSON record (see scripts/enqueue-2.lua and scripts/dead-letter-9.lua).

/**
 * The encoded message of a stored body `'<order>|<message>'` (see scripts/enqueue-2.lua); a body
 * without that prefix (written by something else) as it is; null when there is none.
 */
export function withoutOrder(stored: unknown): string | null {
  if (typeof stored !== 'string') return null;
  const bar = stored.indexOf('|');
  if (bar <= 0 || bar > 20) return stored;
  for (let i = 0; i < bar; i++) {
    const c = stored.charCodeAt(i);
    if (c < 48 || c > 57) return stored;
  }
  return stored.slice(bar + 1);
}

/**
 * Builds a valid stand-in message (one the decoder accepts, so its dead letter can be listed)
 * for data that failed to decode, keeping whatever fields pass the wire rules; its payload is
 * empty: the letter's `raw` keeps the data.
 */
export function salvage(raw: string, id: string, queue: string, attempt: number): Message {
  let o: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) o = parsed as Record<string, unknown>;
  } catch {
    // Not JSON at all: every field falls back.
  }
  return standIn(o, id, queue, attempt);
}

/** A valid message from the fields of `o` that pass the wire rules, with an empty payload and only its routing headers. */
export function standIn(o: Record<string, unknown>, id: string, queue: string, attempt: number): Message {
  const name = (v: unknown, fallback: string) => (isValidName(v) ? v : fallback);
  const types: readonly string[] = Object.values(MessageType);
  const ts = parseWireTimestamp(o['timestamp'] instanceof Date ? o['timestamp'].toISOString() : o['timestamp']);
  const priority = o['priority'];
  return {
    // A letter is stored under its message id: one made up keeps letters without a usable id apart.
    id: isValidName(id) ? id : name(o['id'], newId()),
    type: (typeof o['type'] === 'string' && types.includes(o['type']) ? o['type'] : MessageType.ERROR) as MessageType,
    sender: name(o['sender'], 'unknown'),
    recipient: isValidName(o['recipient'], true) ? o['recipient'] : isValidName(queue, true) ? queue : '',
    payload: {},
    timestamp: Number.isNaN(ts.getTime()) ? new Date() : ts,
    priority: typeof priority === 'number' && Number.isInteger(priority) && priority >= 0 && priority <= 10 ? priority : DEFAULT_PRIORITY,
    // What routes a reply to the request it answers is kept, so a requester can be told at once.
    ...routing(o),
    attempt: typeof o['attempt'] === 'number' && Number.isInteger(o['attempt']) && o['attempt'] >= 0 ? o['attempt'] : attempt,
  };
}

/** The `correlationId` and `headers.inReplyTo` of `o`, where they pass the wire rules (else none). */
function routing(o: Record<string, unknown>): { headers: Record<string, string>; correlationId?: string } {
  const headers = o['headers'];
  const inReplyTo = headers !== null && typeof headers === 'object' ? (headers as Record<string, unknown>)['inReplyTo'] : undefined;
  const correlationId = o['correlationId'];
  return {
    headers: isValidName(inReplyTo) ? { inReplyTo } : {},
    ...(isValidName(correlationId) ? { correlationId } : {}),
  };
}

const REASONS: ReadonlySet<string> = new Set<DeadLetterReason>(['recipient_not_found', 'max_attempts', 'expired', 'malformed']);

/**
 * A dead letter as stored. Never throws: dead-lettering must end with the message dead-lettered.
 * A message that cannot be encoded (a handler made its payload cyclic, or a BigInt) is stored as a
 * stand-in, and `attachBody` asks the script to keep the stored wire form as the letter's `raw`.
 */
export function encodeDeadLetter(letter: DeadLetter): { json: string; attachBody: boolean } {
  let m: string;
  let error = letter.error;
  let attachBody = false;
  try {
    m = encodeMessage(letter.message);
  } catch (err) {
    m = encodeMessage(
      standIn(letter.message as unknown as Record<string, unknown>, letter.message.id, letter.queue, letter.message.attempt),
    );
    error = `${error === undefined ? '' : error + '; '}the message could not be encoded (${err instanceof Error ? err.message : String(err)}): this letter holds a stand-in, its raw field the message as stored`;
    attachBody = letter.raw === undefined;
  }
  const json = JSON.stringify({
    m,
    q: letter.queue,
    r: letter.reason,
    ...(error !== undefined ? { e: error } : {}),
    n: letter.attempts,
    d: letter.deadAt.getTime(),
    ...(letter.raw !== undefined ? { raw: letter.raw } : {}),
  });
  return { json, attachBody };
}

export function decodeDeadLetter(json: string): DeadLetter | null {
  try {
    const o = JSON.parse(json) as Record<string, unknown>;
    const reason = String(o['r']);
    if (!REASONS.has(reason)) throw new ValidationError(`unknown dead-letter reason \`${reason}\``);
    const letter: DeadLetter = {
      message: decodeMessage(o['m']),
      queue: String(o['q']),
      reason: reason as DeadLetterReason,
      attempts: Number(o['n']),
      deadAt: new Date(Number(o['d'])),
    };
    if (typeof o['e'] === 'string') letter.error = o['e'];
    if (typeof o['raw'] === 'string') letter.raw = o['raw'];
    return letter;
  } catch {
    return null; // Tampered with in Redis: not something the bus can redrive.
  }
}
