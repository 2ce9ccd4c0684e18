import { randomFillSync } from 'node:crypto';

// Message ids (monotonic ULIDs) and W3C trace context (`traceparent`), made for every message.
// ---------------------------------------------------------------- ids and randomness

// Ids and trace ids are made for every message, so they are made in chunks: the bytes of several
// are written into a buffer, read out as ONE latin1 string (crossing into C++ once), and handed
// out as substrings (V8 slices: a pointer and an offset, no copy). Randomness comes from a pooled
// buffer refilled by one randomFillSync per few thousand messages; the pool is large so a refill
// (several µs) lands on well under 1% of messages and stays out of latency percentiles.
const RANDOM_POOL = Buffer.allocUnsafe(65_536);
let randomOffset = RANDOM_POOL.length;
/** Offset of `n` fresh random bytes in RANDOM_POOL. */
function takeRandom(n: number): number {
  if (randomOffset + n > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomOffset = 0;
  }
  const at = randomOffset;
  randomOffset += n;
  return at;
}

/** The first `length` bytes of a buffer as a one-byte string; Node's latin1Slice skips toString's encoding dispatch. */
const latin1: (buf: Buffer, length: number) => string =
  typeof (Buffer.prototype as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (buf, length) => (buf as unknown as { latin1Slice(start: number, end: number): string }).latin1Slice(0, length)
    : (buf, length) => buf.toString('latin1', 0, length);

const CROCKFORD = Buffer.from('0123456789ABCDEFGHJKMNPQRSTVWXYZ', 'latin1');
const ID_LENGTH = 26;
/**
 * Most ids made per chunk. A chunk is made for one millisecond (an id carries its time), sized by
 * how many ids the previous millisecond needed, so a slice rarely keeps unused ids alive; the
 * bound keeps the string a lone surviving id pins small (832 bytes).
 */
const ID_CHUNK_MAX = 32;
const ID_BUFFER = Buffer.alloc(ID_LENGTH * ID_CHUNK_MAX);
/** The 16 base-32 digits of the random part of the last id written. */
const idDigits = new Uint8Array(16);
/** The 10 base-32 digits of the time of the last id written. */
const idTimeDigits = new Uint8Array(10);
/** Time (ms) of the last id written. */
let idTime = -1;
let idChunk = '';
/** Offset in `idChunk` of the next id to hand out, and the end of the chunk. */
let idNext = 0;
let idEnd = 0;
/** The millisecond the current chunk was made for, ids handed out in it, and the next chunk's size. */
let idChunkTime = -1;
let idIssued = 0;
let idChunkSize = 1;

/** Writes the next monotonic id for `now` into ID_BUFFER at `at` (ulidx's `monotonicFactory` rules). */
function writeId(now: number, at: number): void {
  if (now <= idTime) {
    // Same (or an earlier) millisecond: increment the random part, so ids sort in creation order.
    let i = 15;
    while (i >= 0 && idDigits[i] === 31) idDigits[i--] = 0;
    if (i >= 0) idDigits[i] = (idDigits[i] as number) + 1;
    else {
      idTime++; // 2^80 ids in one millisecond: borrow the next one
      setTimeDigits(idTime);
    }
  } else {
    idTime = now;
    setTimeDigits(now);
    const r = takeRandom(16);
    for (let i = 0; i < 16; i++) idDigits[i] = (RANDOM_POOL[r + i] as number) & 31;
  }
  for (let i = 0; i < 10; i++) ID_BUFFER[at + i] = CROCKFORD[idTimeDigits[i] as number] as number;
  for (let i = 0; i < 16; i++) ID_BUFFER[at + 10 + i] = CROCKFORD[idDigits[i] as number] as number;
}

/**
 * Writes at `at` the id after the one just before it in ID_BUFFER (same millisecond): a copy with
 * the random part incremented, touching only the digits that change.
 */
function nextId(at: number): void {
  const prev = at - ID_LENGTH;
  for (let i = 0; i < ID_LENGTH; i++) ID_BUFFER[at + i] = ID_BUFFER[prev + i] as number;
  let i = 15;
  while (i >= 0 && idDigits[i] === 31) {
    idDigits[i] = 0;
    ID_BUFFER[at + 10 + i] = CROCKFORD[0] as number;
    i--;
  }
  if (i >= 0) {
    const d = (idDigits[i] as number) + 1;
    idDigits[i] = d;
    ID_BUFFER[at + 10 + i] = CROCKFORD[d] as number;
  } else {
    writeId(idTime + 1, at); // 2^80 ids in one millisecond: borrow the next one
  }
}

function setTimeDigits(time: number): void {
  let t = time;
  for (let i = 9; i >= 0; i--) {
    const digit = t % 32;
    idTimeDigits[i] = digit;
    t = (t - digit) / 32;
  }
}

/**
 * A new sortable id: a ULID (48-bit ms time + 80 random bits, Crockford base 32), monotonic within
 * this process: ids made in the same millisecond increment the random part, as `ulidx`'s
 * `monotonicFactory` does, so they sort in creation order.
 */
export function newId(): string {
  return idAt(Date.now());
}

/** `newId` for a time the caller already read (one clock read per message). */
export function idAt(now: number): string {
  if (now === idChunkTime) {
    if (idNext < idEnd) {
      idIssued++;
      return idChunk.substring(idNext, (idNext += ID_LENGTH));
    }
    // Ran out within the millisecond: this millisecond is busy, make the next chunk bigger.
    idChunkSize = Math.min(ID_CHUNK_MAX, idChunkSize * 2);
  } else {
    idChunkSize = idIssued >= ID_CHUNK_MAX ? ID_CHUNK_MAX : idIssued > 0 ? idIssued : 1;
    idChunkTime = now;
    idIssued = 0;
  }
  const count = idChunkSize;
  writeId(now, 0);
  for (let k = 1; k < count; k++) nextId(k * ID_LENGTH);
  if (count === 1) {
    idNext = idEnd = 0;
    idIssued++;
    return latin1(ID_BUFFER, ID_LENGTH);
  }
  idChunk = latin1(ID_BUFFER, count * ID_LENGTH);
  idEnd = count * ID_LENGTH;
  idNext = ID_LENGTH;
  idIssued++;
  return idChunk.substring(0, ID_LENGTH);
}

// ---------------------------------------------------------------- W3C trace context

export const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

const HEX_CODES = Buffer.from('0123456789abcdef', 'latin1');
const TRACE_LENGTH = 55;
/** Traceparents made per chunk (see ids above): a lone survivor pins at most 16 × 55 bytes. */
const TRACE_CHUNK = 16;
const TRACE_BUFFER = Buffer.from('00-00000000000000000000000000000000-0000000000000000-01'.repeat(TRACE_CHUNK), 'latin1');
let traceChunk = '';
let traceNext = 0;
/** One child traceparent at a time (its trace id comes from the parent). */
const CHILD_SCRATCH = Buffer.from('00-00000000000000000000000000000000-0000000000000000-01', 'latin1');

/** Writes `bytes` random bytes as hex into `buf` at `pos`; false if they were all zero (invalid in W3C). */
function writeRandomHex(buf: Buffer, pos: number, bytes: number): boolean {
  const at = takeRandom(bytes);
  let nonZero = 0;
  for (let i = 0; i < bytes; i++) {
    const b = RANDOM_POOL[at + i] as number;
    nonZero |= b;
    buf[pos++] = HEX_CODES[b >> 4] as number;
    buf[pos++] = HEX_CODES[b & 15] as number;
  }
  return nonZero !== 0;
}

/** Writes a chunk of fresh traceparents into TRACE_BUFFER: 24 random bytes each, as hex. */
function refillTraces(): void {
  let r = takeRandom(TRACE_CHUNK * 24);
  for (let k = 0; k < TRACE_CHUNK; k++) {
    let pos = k * TRACE_LENGTH + 3;
    let traceBits = 0;
    for (let i = 0; i < 16; i++) {
      const b = RANDOM_POOL[r++] as number;
      traceBits |= b;
      TRACE_BUFFER[pos++] = HEX_CODES[b >> 4] as number;
      TRACE_BUFFER[pos++] = HEX_CODES[b & 15] as number;
    }
    pos++; // '-'
    let spanBits = 0;
    for (let i = 0; i < 8; i++) {
      const b = RANDOM_POOL[r++] as number;
      spanBits |= b;
      TRACE_BUFFER[pos++] = HEX_CODES[b >> 4] as number;
      TRACE_BUFFER[pos++] = HEX_CODES[b & 15] as number;
    }
    // All-zero ids are invalid in W3C (odds 2^-64 and less): draw those again.
    while (traceBits === 0 && !writeRandomHex(TRACE_BUFFER, k * TRACE_LENGTH + 3, 16));
    while (spanBits === 0 && !writeRandomHex(TRACE_BUFFER, k * TRACE_LENGTH + 36, 8));
  }
}

/** A fresh `traceparent` (version 00, sampled) starting a new trace. */
export function newTraceparent(): string {
  if (traceNext === traceChunk.length) {
    refillTraces();
    traceChunk = latin1(TRACE_BUFFER, TRACE_BUFFER.length);
    traceNext = 0;
  }
  return traceChunk.substring(traceNext, (traceNext += TRACE_LENGTH));
}

/** A `traceparent` for a child span of `parent` (same trace id, new span id); a new trace if `parent` is invalid. */
export function childTraceparent(parent: string | undefined): string {
  if (typeof parent !== 'string' || !takeParent(parent)) return newTraceparent();
  while (!writeRandomHex(CHILD_SCRATCH, 36, 8));
  return latin1(CHILD_SCRATCH, TRACE_LENGTH);
}

const isLowerHex = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);

/**
 * Whether `p` is a traceparent (what TRACEPARENT matches), copying its trace id and flags into
 * CHILD_SCRATCH on the way: one pass over the characters instead of a regex and a copy.
 */
function takeParent(p: string): boolean {
  if (p.length !== TRACE_LENGTH || p.charCodeAt(0) !== 48 || p.charCodeAt(1) !== 48) return false;
  if (p.charCodeAt(2) !== 45 || p.charCodeAt(35) !== 45 || p.charCodeAt(52) !== 45) return false;
  for (let i = 3; i < 35; i++) {
    const c = p.charCodeAt(i);
    if (!isLowerHex(c)) return false;
    CHILD_SCRATCH[i] = c;
  }
  for (let i = 36; i < 52; i++) if (!isLowerHex(p.charCodeAt(i))) return false;
  const f1 = p.charCodeAt(53);
  const f2 = p.charCodeAt(54);
  if (!isLowerHex(f1) || !isLowerHex(f2)) return false;
  CHILD_SCRATCH[53] = f1;
  CHILD_SCRATCH[54] = f2;
  return true;
}

/** The 32-hex trace id of a `traceparent`, or undefined. */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  return traceparent ? TRACEPARENT.exec(traceparent)?.[1] : undefined;
}
