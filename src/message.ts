import { ValidationError } from './errors.js';
import { childTraceparent, idAt, newId, newTraceparent, traceIdOf } from './ids.js';

// Ids and trace context are made in src/ids.ts; re-exported here, where callers have always found them.
export { childTraceparent, idAt, newId, newTraceparent, traceIdOf };

/** The six kinds of message. A const object rather than a TS enum: usable as `MessageType.TASK` and as a type. */
export const MessageType = {
  TASK: 'task',
  RESULT: 'result',
  STATUS: 'status',
  ERROR: 'error',
  FEEDBACK: 'feedback',
  CONTROL: 'control',
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const TYPES: ReadonlySet<string> = new Set(Object.values(MessageType));

export interface Message<P = Record<string, unknown>> {
  /** Unique and sortable by creation time (ULID). */
  id: string;
  type: MessageType;
  sender: string;
  /** `''` for a broadcast or a topic publication. */
  recipient: string;
  /** JSON-serialisable. Treat as immutable: the memory transport shares it rather than copying it. */
  payload: P;
  /**
   * When the message was created. Messages made in the same millisecond share one Date instance
   * (a Date costs ~100 bytes, and a deep queue holds many): treat it as immutable, like the rest.
   */
  timestamp: Date;
  /** Integer 0..10, higher is more urgent. */
  priority: number;
  correlationId?: string;
  /** Transport-neutral extras: `traceparent`, `inReplyTo`, `replyTo`, `topic`, ... */
  headers: Record<string, string>;
  /** 1 on first delivery; set by the bus. */
  attempt: number;
  /** Time to live from `timestamp`; expired before delivery → dead letter `expired`. */
  ttlMs?: number;
}

/** What a producer gives `send`. */
export interface MessageInput<P = Record<string, unknown>> {
  sender: string;
  recipient: string;
  type: MessageType;
  payload: P;
  priority?: number;
  correlationId?: string;
  headers?: Record<string, string>;
  ttlMs?: number;
  id?: string;
}

export const DEFAULT_PRIORITY = 5;
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Longest name (sender, recipient, topic, header key) accepted; keeps keys and logs sane. */
export const MAX_NAME_LENGTH = 256;

/**
 * A received value as an error message shows it: its kind, and scalars quoted (long strings cut), so
 * the string '5' and the number 5 read differently: ``the string `'5'` `` and `` `5` ``.
 */
export function describeValue(value: unknown, maxChars = 60): string {
  if (typeof value === 'string') return `the string \`'${value.length > maxChars ? value.slice(0, maxChars) + '…' : value}'\``;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return `\`${String(value)}\``;
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/**
 * Why `value` is no name (sender, recipient, id, correlation id, header key), or undefined when it is
 * one: a string of at most MAX_NAME_LENGTH characters (Unicode code points, as JSON Schema's
 * `maxLength` counts them) with no control character (U+0000..U+001F) and no lone surrogate.
 * The schema says the same with `maxLength` and NAME_PATTERN.
 */
function nameProblem(value: string, allowEmpty: boolean): string | undefined {
  const n = value.length;
  if (n === 0) return allowEmpty ? undefined : 'must not be empty';
  let pairs = 0;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20) return `must not contain control characters, got U+${c.toString(16).padStart(4, '0').toUpperCase()} at ${i}`;
    if ((c & 0xf800) === 0xd800) {
      // A high surrogate followed by a low one is one character; anything else is a lone surrogate.
      const d = c < 0xdc00 && i + 1 < n ? value.charCodeAt(i + 1) : 0;
      if ((d & 0xfc00) !== 0xdc00) return `must be well-formed Unicode, got a lone surrogate at ${i}`;
      i++;
      pairs++;
    }
  }
  if (n - pairs > MAX_NAME_LENGTH) return `must be at most ${MAX_NAME_LENGTH} characters, got ${n - pairs}`;
  return undefined;
}

/** Whether `value` is a valid name (see `nameProblem`); for code that salvages what it can. */
export function isValidName(value: unknown, allowEmpty = false): value is string {
  return typeof value === 'string' && nameProblem(value, allowEmpty) === undefined;
}

/** `nameProblem`'s common case, fast (it runs per message): 1..256 units, no control character, no surrogate. */
function plainName(value: string): boolean {
  const n = value.length;
  if (n === 0 || n > MAX_NAME_LENGTH) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || (c & 0xf800) === 0xd800) return false;
  }
  return true;
}

function requireName(field: string, value: unknown, allowEmpty = false): string {
  if (typeof value !== 'string') throw new ValidationError(`${field} must be a string, got ${describeValue(value)}`, { field });
  if (plainName(value)) return value;
  const problem = nameProblem(value, allowEmpty);
  if (problem !== undefined) throw new ValidationError(`${field} ${problem}`, { field });
  return value;
}

export function validatePriority(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 10) {
    throw new ValidationError(`priority must be an integer 0..10, got ${describeValue(value)}`, { field: 'priority' });
  }
  return value;
}

export function validateType(value: unknown): MessageType {
  // Compared one by one: literal type strings are internalized, so each test is a pointer compare.
  if (value === 'task' || value === 'result' || value === 'status' || value === 'error' || value === 'feedback' || value === 'control') {
    return value;
  }
  if (typeof value !== 'string' || !TYPES.has(value)) {
    throw new ValidationError(`type must be one of ${[...TYPES].join(', ')}, got ${describeValue(value)}`, { field: 'type' });
  }
  return value as MessageType;
}

/** Carries a leaf validation failure up the walk so each level can prefix its key to the path. */
class PayloadFault {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {}
}

/** Deeper than this is either a cycle or not a message payload (the schema's `$defs` chain says the same). */
export const MAX_PAYLOAD_DEPTH = 256;

/**
 * Keys refused anywhere in a message (payload, headers, envelope): code that merges a payload into
 * an object with plain assignment would set its prototype. The schema refuses them too.
 */
const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
/** Whether `key` is a forbidden key; the length test spares nearly every key the set lookup. */
const isForbiddenKey = (key: string): boolean => (key.length === 9 || key.length === 11) && FORBIDDEN_KEYS.has(key);

/**
 * Upper bound of the UTF-8 size of `value` as JSON (a string unit is at most 6 bytes escaped),
 * checking on the way that it is plain JSON data: finite numbers, plain objects, no forbidden
 * keys, containers nested at most MAX_PAYLOAD_DEPTH deep. Allocation-free on the good path.
 * `send()` and the decoder both run it, so they hold a payload to one rule.
 */
function jsonBound(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return 2 + 6 * value.length;
    case 'boolean':
      return 5;
    case 'number':
      if (!Number.isFinite(value)) throw new PayloadFault('', `must be a finite number, got ${value}`);
      return 25;
    case 'object': {
      if (value === null) return 4;
      if (depth >= MAX_PAYLOAD_DEPTH) throw new PayloadFault('', `is nested deeper than ${MAX_PAYLOAD_DEPTH} levels (or cyclic)`);
      if (Array.isArray(value)) {
        let size = 2 + value.length;
        for (let i = 0; i < value.length; i++) {
          try {
            size += jsonBound(value[i], depth + 1);
          } catch (fault) {
            throw fault instanceof PayloadFault ? new PayloadFault(`[${i}]${fault.path}`, fault.problem) : fault;
          }
        }
        return size;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new PayloadFault('', `must be plain JSON data, got an instance of ${proto?.constructor?.name ?? 'unknown'}`);
      }
      let size = 2;
      for (const key in value) {
        if (!hasOwn.call(value, key)) continue;
        if (isForbiddenKey(key)) throw new PayloadFault('', `has the forbidden key \`${key}\``);
        try {
          size += 4 + 6 * key.length + jsonBound((value as Record<string, unknown>)[key], depth + 1);
        } catch (fault) {
          throw fault instanceof PayloadFault ? new PayloadFault(`.${key}${fault.path}`, fault.problem) : fault;
        }
      }
      return size;
    }
    default:
      throw new PayloadFault('', `is not JSON-serialisable (a ${typeof value})`);
  }
}

/**
 * Whether data from JSON.parse keeps `jsonBound`'s rules (finite numbers, no forbidden key,
 * nesting): the same rules without the size sum, the prototype checks or the paths, which
 * JSON.parse's output does not need, so the decoder pays little for them. A false answer is
 * explained by `payloadBound`.
 */
function parsedJsonOk(value: unknown, depth: number): boolean {
  if (typeof value !== 'object') return typeof value !== 'number' || Number.isFinite(value);
  if (value === null) return true;
  if (depth >= MAX_PAYLOAD_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!parsedJsonOk(value[i], depth + 1)) return false;
    return true;
  }
  for (const key in value) {
    if (isForbiddenKey(key) || !parsedJsonOk((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

/** `jsonBound` of a payload, as a ValidationError naming the path of the first offending value. */
function payloadBound(payload: unknown): number {
  if (payload === null || typeof payload !== 'object') {
    throw new ValidationError(`payload must be a JSON object or array, got ${describeValue(payload)}`, { field: 'payload' });
  }
  try {
    return jsonBound(payload, 0);
  } catch (fault) {
    if (fault instanceof PayloadFault) throw new ValidationError(`payload${fault.path} ${fault.problem}`, { field: 'payload' });
    throw new ValidationError(`payload is not JSON-serialisable: ${(fault as Error).message}`, { field: 'payload', cause: fault });
  }
}

/**
 * Checks that a payload is a JSON object or array of plain JSON data (no cycles, functions,
 * `undefined`, class instances such as Date, non-finite numbers, `__proto__`/`constructor`/
 * `prototype` keys, or nesting deeper than 256) no larger than `maxBytes` as UTF-8 JSON, without
 * building its JSON text unless it is close to the limit. Throws `ValidationError` naming the path
 * of the first offending value. Returns an upper bound of its size in bytes (at most `maxBytes`).
 */
export function validatePayload(payload: unknown, maxBytes: number): number {
  const bound = payloadBound(payload);
  if (bound <= maxBytes) return bound;
  const bytes = Buffer.byteLength(JSON.stringify(payload), 'utf8');
  if (bytes > maxBytes) {
    throw new ValidationError(`payload must be at most ${maxBytes} bytes as JSON, got ${bytes}`, { field: 'payload' });
  }
  return bytes;
}

const hasOwn = Object.prototype.hasOwnProperty;

/** Checks a header key and value; returns an upper bound of the pair's size in the wire form. */
function headerBound(k: string, v: unknown): number {
  if (typeof v !== 'string') throw new ValidationError(`headers.${k} must be a string, got ${describeValue(v)}`, { field: 'headers' });
  if (isForbiddenKey(k)) throw new ValidationError(`headers has the forbidden key \`${k}\``, { field: 'headers' });
  const problem = nameProblem(k, false);
  if (problem !== undefined)
    throw new ValidationError(`a header key (\`${k.length > 60 ? k.slice(0, 60) + '…' : k}\`) ${problem}`, { field: 'headers' });
  return 6 + 6 * (k.length + v.length);
}

/**
 * Upper bound of the wire size of the headers the last `validateHeaders`/`checkHeaders` call
 * checked (`{}` included): a module variable rather than a returned pair, to spare an allocation per send.
 */
let headersBytes = 0;

/** Headers as a fresh object of strings; their size bound goes to `headersBytes`. */
function validateHeaders(headers: unknown): Record<string, string> {
  headersBytes = 2;
  if (headers === undefined) return {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new ValidationError(`headers must be an object of strings, got ${describeValue(headers)}`, { field: 'headers' });
  }
  const out: Record<string, string> = {};
  let size = 2;
  for (const k in headers) {
    if (!hasOwn.call(headers, k)) continue;
    const v = (headers as Record<string, unknown>)[k];
    size += headerBound(k, v);
    out[k] = v as string;
  }
  headersBytes = size;
  return out;
}

/** `validateHeaders` for an object the caller hands over: its values are checked, and it is kept as it is. */
function checkHeaders(headers: unknown): Record<string, string> {
  headersBytes = 2;
  if (headers === undefined) return {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || Object.getPrototypeOf(headers) !== Object.prototype) {
    return validateHeaders(headers);
  }
  let size = 2;
  for (const k in headers) {
    if (!hasOwn.call(headers, k)) return validateHeaders(headers);
    size += headerBound(k, (headers as Record<string, unknown>)[k]);
  }
  headersBytes = size;
  return headers as Record<string, string>;
}

/** Size bound of headers holding only a fresh traceparent (what most sends carry). */
const TRACE_ONLY_HEADERS_BYTES = 2 + 6 + 6 * ('traceparent'.length + 55);

let lastStamp: Date = new Date(0);
/** `now` as a Date, one instance per millisecond (see `Message.timestamp`). */
function stampAt(now: number): Date {
  if (lastStamp.getTime() !== now) lastStamp = new Date(now);
  return lastStamp;
}

/**
 * Validates a producer's input and stamps it into a `Message` (id, timestamp, defaults, attempt 0).
 * Nothing is enqueued by this function; the bus calls it before touching any transport.
 */
export function createMessage<P>(input: MessageInput<P>, maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): Message<P> {
  return build(input, maxPayloadBytes, 0);
}

/** `createTracedMessage` flag: a fresh `traceparent` header when the input carries none. */
export const STAMP_TRACE = 1;
/** `createTracedMessage` flag: `input.headers` is a fresh object the caller hands over (checked in place, not copied). */
export const STAMP_OWN_HEADERS = 2;
/** `createTracedMessage` flag: without a `correlationId`, the message correlates to its own id (a request). */
export const STAMP_SELF_CORRELATED = 4;

/**
 * `createMessage` as the bus stamps what it sends (`flags`: the STAMP_ constants, default a fresh
 * `traceparent` when absent). Builds the headers object once (most sends give no headers).
 */
export function createTracedMessage<P>(
  input: MessageInput<P>,
  maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES,
  flags = STAMP_TRACE,
): Message<P> {
  return build(input, maxPayloadBytes, flags);
}

function build<P>(input: MessageInput<P>, maxPayloadBytes: number, flags: number): Message<P> {
  if (input === null || typeof input !== 'object') {
    throw new ValidationError(`message must be an object, got ${describeValue(input)}`);
  }
  const sender = requireName('sender', input.sender);
  const recipient = requireName('recipient', input.recipient, true);
  const type = validateType(input.type);
  const priority = input.priority === undefined ? DEFAULT_PRIORITY : validatePriority(input.priority);
  const payloadBytes = validatePayload(input.payload, maxPayloadBytes);
  if (input.correlationId !== undefined) requireName('correlationId', input.correlationId);
  if (input.id !== undefined) requireName('id', input.id);
  if (input.ttlMs !== undefined && (typeof input.ttlMs !== 'number' || !(input.ttlMs > 0) || !Number.isFinite(input.ttlMs))) {
    throw new ValidationError(`ttlMs must be a positive number of milliseconds, got ${describeValue(input.ttlMs)}`, { field: 'ttlMs' });
  }
  let headers: Record<string, string>;
  let headerSize: number;
  if ((flags & STAMP_TRACE) !== 0 && input.headers === undefined) {
    headers = { traceparent: newTraceparent() };
    headerSize = TRACE_ONLY_HEADERS_BYTES;
  } else {
    headers = (flags & STAMP_OWN_HEADERS) !== 0 ? checkHeaders(input.headers) : validateHeaders(input.headers);
    headerSize = headersBytes;
    if ((flags & STAMP_TRACE) !== 0 && headers['traceparent'] === undefined) {
      headers['traceparent'] = newTraceparent();
      headerSize += TRACE_ONLY_HEADERS_BYTES;
    }
  }
  const now = Date.now(); // one clock read for the id and the timestamp
  const id = input.id ?? idAt(now);
  const correlationId = input.correlationId ?? ((flags & STAMP_SELF_CORRELATED) !== 0 ? id : undefined);
  // Two literal shapes (with and without a correlation), so a message never grows after creation.
  const message: Message<P> =
    correlationId === undefined
      ? { id, type, sender, recipient, payload: input.payload, timestamp: stampAt(now), priority, headers, attempt: 0 }
      : { id, type, sender, recipient, payload: input.payload, timestamp: stampAt(now), priority, headers, attempt: 0, correlationId };
  if (input.ttlMs !== undefined) message.ttlMs = input.ttlMs;
  // The one size rule (see MAX_SEND_WIRE_BYTES): an upper bound of the wire form settles nearly
  // every message; only one that might be over it is encoded and measured.
  const bound =
    payloadBytes + ENVELOPE_BYTES + 6 * (id.length + sender.length + recipient.length + (correlationId?.length ?? 0)) + headerSize;
  if (bound > MAX_SEND_WIRE_BYTES) checkWireSize(message);
  return message;
}

/** Upper bound of a wire form's field names, punctuation, type, timestamp, priority, attempt and ttl. */
const ENVELOPE_BYTES = 256;

function checkWireSize(message: Message<unknown>): void {
  const bytes = Buffer.byteLength(encodeMessage(message), 'utf8');
  if (bytes > MAX_SEND_WIRE_BYTES) {
    throw new ValidationError(
      `message must be at most ${MAX_SEND_WIRE_BYTES} bytes in its wire form (payload, headers and envelope as UTF-8 JSON: ` +
        `the limit every consumer decodes, which maxPayloadBytes does not raise), got ${bytes}`,
      { field: 'message' },
    );
  }
}

// ---------------------------------------------------------------- wire codec

/**
 * Largest wire form (UTF-8 bytes of the JSON) `decodeMessage` accepts by default: the default
 * payload limit plus 64 KiB for headers and envelope. It is the one size rule of the protocol:
 * `send()` refuses any message whose wire form is over MAX_SEND_WIRE_BYTES, whatever
 * `maxPayloadBytes` says, so every message accepted at the door can be decoded by every consumer.
 */
export const DEFAULT_MAX_WIRE_BYTES = DEFAULT_MAX_PAYLOAD_BYTES + 64 * 1024;
/**
 * Largest wire form `send()` accepts, as encoded at attempt 0: the decoder's limit less room for
 * the attempt count a transport or dead letter stamps later.
 */
export const MAX_SEND_WIRE_BYTES = DEFAULT_MAX_WIRE_BYTES - 64;

/** The JSON wire form (see schema/message.schema.json): the message with an ISO-8601 timestamp. */
export function encodeMessage(message: Message<unknown>): string {
  return JSON.stringify({
    id: message.id,
    type: message.type,
    sender: message.sender,
    recipient: message.recipient,
    payload: message.payload,
    timestamp: message.timestamp.toISOString(),
    priority: message.priority,
    ...(message.correlationId !== undefined ? { correlationId: message.correlationId } : {}),
    headers: message.headers,
    attempt: message.attempt,
    ...(message.ttlMs !== undefined ? { ttlMs: message.ttlMs } : {}),
  });
}

/**
 * An RFC 3339 date-time as the schema's `timestamp` pattern has it: an offset only in years
 * 0001..9998 (so no offset moves the instant out of the four-digit years toISOString writes back
 * as `Z`), hours 00..23, minutes and
 * seconds 00..59 (no leap second: a Date cannot hold one), 1..9 fraction digits, `Z` or an offset.
 * Days beyond the month's length are refused after it (`validDay`), as the schema's pattern does.
 */
const ISO_TIMESTAMP =
  /^(?!(?:0000|9999)-.*[+-]\d\d:\d\d$)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;
const WIRE_KEYS = new Set([
  'id',
  'type',
  'sender',
  'recipient',
  'payload',
  'timestamp',
  'priority',
  'correlationId',
  'headers',
  'attempt',
  'ttlMs',
]);
const INVALID_DATE = new Date(NaN);

/** Whether the day of an ISO_TIMESTAMP match exists in its month (Feb 29 only in leap years). */
function validDay(ts: string): boolean {
  const day = (ts.charCodeAt(8) - 48) * 10 + ts.charCodeAt(9) - 48;
  if (day <= 28) return true;
  const month = (ts.charCodeAt(5) - 48) * 10 + ts.charCodeAt(6) - 48;
  if (month !== 2) return day <= (month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31);
  if (day > 29) return false;
  const year = Number(ts.slice(0, 4));
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** The Date of a wire timestamp, or INVALID_DATE when it is not one the schema accepts. */
export function parseWireTimestamp(ts: unknown): Date {
  return typeof ts === 'string' && ISO_TIMESTAMP.test(ts) && validDay(ts) ? new Date(ts) : INVALID_DATE;
}

/** UTF-8 size of `raw` when it may be over `maxBytes`, else its length (a lower bound, at most 3x below). */
function utf8Over(raw: string, maxBytes: number): number {
  return raw.length * 3 > maxBytes ? Buffer.byteLength(raw, 'utf8') : raw.length;
}

/**
 * Decodes the wire form. It accepts exactly the documents schema/message.schema.json accepts
 * (test/corpus holds the cases both are held to), no larger than `maxBytes` as UTF-8: malformed
 * or hostile input (not JSON, wrong types, over the size limit, `__proto__`/`constructor`/
 * `prototype` keys anywhere, payloads nested deeper than 256 or holding numbers JSON.parse turns
 * into Infinity, impossible dates, names with control characters or lone surrogates, unknown
 * fields) throws `ValidationError` and nothing else. It holds the payload to `send()`'s rules.
 */
export function decodeMessage(raw: unknown, maxBytes = DEFAULT_MAX_WIRE_BYTES): Message {
  if (typeof raw !== 'string') throw new ValidationError(`wire message must be a string, got ${describeValue(raw)}`);
  const size = utf8Over(raw, maxBytes);
  if (size > maxBytes) throw new ValidationError(`wire message must be at most ${maxBytes} bytes, got ${size}`);
  let data: unknown;
  try {
    // No reviver (it makes JSON.parse ~3x slower): JSON.parse makes `__proto__` an own data
    // property, never a prototype, and the checks below refuse the forbidden keys wherever they are.
    data = JSON.parse(raw);
  } catch (err) {
    throw new ValidationError(`wire message is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ValidationError(`wire message must be a JSON object, got ${describeValue(data)}`);
  }
  const o = data as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (WIRE_KEYS.has(key)) continue;
    if (isForbiddenKey(key)) throw new ValidationError(`wire message contains the forbidden key \`${key}\``, { field: key });
    throw new ValidationError(`wire message has an unknown field \`${key}\``, { field: key });
  }
  const id = requireName('id', o['id']);
  const type = validateType(o['type']);
  const sender = requireName('sender', o['sender']);
  const recipient = requireName('recipient', o['recipient'], true);
  const priority = validatePriority(o['priority']);
  const payload = o['payload'];
  // send()'s rule: finite numbers (1e400 parses as Infinity), nesting, forbidden keys.
  if (payload === null || typeof payload !== 'object' || !parsedJsonOk(payload, 0)) {
    payloadBound(payload); // throws, naming the offending value
    throw new ValidationError('payload is not plain JSON data', { field: 'payload' });
  }
  const ts = o['timestamp'];
  const timestamp = parseWireTimestamp(ts);
  if (Number.isNaN(timestamp.getTime())) {
    throw new ValidationError(`timestamp must be an ISO-8601 date-time, got ${describeValue(ts)}`, { field: 'timestamp' });
  }
  const attempt = o['attempt'];
  if (typeof attempt !== 'number' || !Number.isInteger(attempt) || attempt < 0) {
    throw new ValidationError(`attempt must be a non-negative integer, got ${describeValue(attempt)}`, { field: 'attempt' });
  }
  const message: Message = {
    id,
    type,
    sender,
    recipient,
    payload: payload as Record<string, unknown>,
    timestamp,
    priority,
    headers: o['headers'] === undefined ? {} : checkHeaders(o['headers']),
    attempt,
  };
  if (o['correlationId'] !== undefined) message.correlationId = requireName('correlationId', o['correlationId']);
  const ttl = o['ttlMs'];
  if (ttl !== undefined) {
    if (typeof ttl !== 'number' || !(ttl > 0) || !Number.isFinite(ttl)) {
      throw new ValidationError(`ttlMs must be a positive number, got ${describeValue(ttl)}`, { field: 'ttlMs' });
    }
    message.ttlMs = ttl;
  }
  return message;
}
