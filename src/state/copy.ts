import type { DocumentRecord } from './store.js';
import type { ChangeEvent, DocumentState, StateChange } from './types.js';

/**
 * Copies for the state manager's boundaries. Stored and cached state is never handed out or
 * taken in by reference, so no caller can change it by mutating an object; these copies do
 * what `structuredClone` does for our shapes (JSON data plus Dates) at a fraction of its cost,
 * which matters on the write path, where every update returns a document.
 */

/**
 * A deep copy of JSON data (plain objects, arrays, primitives). Dates are copied as Dates;
 * anything else that is not JSON (validation keeps it out) falls back to `structuredClone`.
 * Object spread copies with define semantics, so a `__proto__` key stays an own data property,
 * as `JSON.parse` and `structuredClone` make it (and the loop then assigns to that own property).
 */
export function copyJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = copyJson(value[i] as unknown);
    return out as T;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    return (value instanceof Date ? new Date(value.getTime()) : structuredClone(value)) as T;
  }
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const key in out) {
    const v = out[key];
    if (typeof v === 'object' && v !== null) out[key] = copyJson(v);
  }
  return out as T;
}

/**
 * Deep-freezes JSON data that the caller just made or copied and keeps to itself (the state
 * manager's metadata of a version), and returns it. A value already frozen is taken as frozen
 * throughout (this function froze it). The memory store keeps frozen metadata as it is (see
 * `isFrozenJson`), so a run of content updates hands it the very object it kept: no deep
 * comparison and no second copy per document (bench/NOTES.md, issue 25 round 7).
 */
export function freezeJson<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  if (Array.isArray(value)) for (const item of value) freezeJson(item as unknown);
  else for (const key in value) freezeJson((value as Record<string, unknown>)[key]);
  return Object.freeze(value);
}

/**
 * True when no one can change `value`: JSON primitives, and frozen plain objects and arrays whose
 * own properties are all data properties holding such values. A store may keep such a value
 * instead of a copy of it.
 */
export function isFrozenJson(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) {
    return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null;
  }
  if (!Object.isFrozen(value)) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isFrozenJson(value[i] as unknown)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  if (Object.getOwnPropertySymbols(value).length > 0) return false;
  for (const key of Object.getOwnPropertyNames(value)) {
    const property = Object.getOwnPropertyDescriptor(value, key);
    if (property === undefined || !('value' in property) || !property.enumerable || !isFrozenJson(property.value)) return false;
  }
  return true;
}

/**
 * Structural equality of JSON data (as `copyJson` copies it). Lets a store keep one private copy
 * of metadata that a run of content updates carries over unchanged, instead of one per version.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b) || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let count = 0;
  for (const key in x) {
    if (!Object.hasOwn(y, key) || !sameJson(x[key], y[key])) return false;
    count++;
  }
  for (const _ in y) count--;
  return count === 0;
}

/** A copy of a history entry (no `summary` key when it has none). */
export function copyChange(change: StateChange): StateChange {
  return entry(change.version, new Date(change.timestamp.getTime()), change.actor, change.action, change.summary);
}

/**
 * A history entry object, `summary` included only when there is one: one literal of the entry's
 * final shape, so all its fields are in the object. Adding `summary` afterwards put it in a
 * separate property array, a second object per kept version for the scavenger to copy
 * (bench/NOTES.md, issue 25 round 7).
 */
function entry(version: number, timestamp: Date, actor: string, action: StateChange['action'], summary: string | undefined): StateChange {
  return summary === undefined ? { version, timestamp, actor, action } : { version, timestamp, actor, action, summary };
}

/** A deep copy of a version record. */
export function copyRecord(record: DocumentRecord): DocumentRecord {
  return {
    documentId: record.documentId,
    version: record.version,
    content: record.content,
    metadata: copyJson(record.metadata),
    createdAt: new Date(record.createdAt.getTime()),
    updatedAt: new Date(record.updatedAt.getTime()),
  };
}

/**
 * A Date that cannot be changed: every setter throws a TypeError. The timestamp of a history
 * entry a document carries is one of these (see `sealChange`). It is a real Date otherwise
 * (`instanceof Date`, `toISOString`, JSON, `structuredClone`, equality in tests all behave).
 */
export class ImmutableDate extends Date {}
for (const name of Object.getOwnPropertyNames(Date.prototype)) {
  if (!name.startsWith('set')) continue;
  Object.defineProperty(ImmutableDate.prototype, name, {
    value: function refuse(): never {
      throw new TypeError(`Date.${name}: a history entry's timestamp is immutable (copy it with new Date(timestamp))`);
    },
    writable: false,
    enumerable: false,
    configurable: false,
  });
}

let nowMs = Number.NaN;
let nowDate: ImmutableDate | undefined;

/**
 * The current time as a frozen `ImmutableDate`, one object shared by every call in the same
 * millisecond: the time of a write, kept with its history entry. Immutable, so sharing it is
 * safe; at 100 000 updates/s a Date per write was one more kept object per version for the
 * young-generation collector to copy (bench/NOTES.md, issue 25 round 4).
 */
export function sealedNow(): ImmutableDate {
  const ms = Date.now();
  if (ms !== nowMs || nowDate === undefined) {
    nowMs = ms;
    nowDate = Object.freeze(new ImmutableDate(ms));
  }
  return nowDate;
}

/**
 * A history entry as documents carry it: frozen, with an `ImmutableDate` timestamp. An entry
 * describes a committed version and never changes, so one sealed entry is shared by every
 * document handed out that shows it, instead of being copied (with a new Date each) into each
 * of them: a write returns its document without copying its whole history window.
 */
export function sealChange(change: StateChange): StateChange {
  if (Object.isFrozen(change) && change.timestamp instanceof ImmutableDate) return change;
  const timestamp = Object.freeze(new ImmutableDate(change.timestamp.getTime()));
  return Object.freeze(entry(change.version, timestamp, change.actor, change.action, change.summary));
}

/**
 * `sealChange` for an entry nobody else holds (a store's fresh answer): sealed in place, so
 * reading a history window allocates one object and one Date per entry, not two of each.
 */
export function sealOwnChange(change: StateChange): StateChange {
  if (Object.isFrozen(change)) return sealChange(change);
  change.timestamp = Object.freeze(new ImmutableDate(change.timestamp.getTime()));
  return Object.freeze(change);
}

/** A new sealed history entry (see `sealChange`) stamped `timestamp`. */
export function newChange(
  version: number,
  timestamp: ImmutableDate,
  actor: string,
  action: StateChange['action'],
  summary: string | undefined,
): StateChange {
  return Object.freeze(entry(version, timestamp, actor, action, summary));
}

/**
 * A copy of a document with its history window: what a caller gets back. The document, its
 * metadata, its dates and its history array are the caller's own; the history entries, which
 * must already be sealed (see `sealChange`), are shared.
 */
export function copyDocument(state: DocumentState): DocumentState {
  return {
    documentId: state.documentId,
    version: state.version,
    content: state.content,
    metadata: copyJson(state.metadata),
    history: state.history.slice(),
    createdAt: new Date(state.createdAt.getTime()),
    updatedAt: new Date(state.updatedAt.getTime()),
  };
}

/** A copy of a change-feed event (no `actor` key when it has none). */
export function copyEvent(event: ChangeEvent): ChangeEvent {
  const out: ChangeEvent = {
    revision: event.revision,
    kind: event.kind,
    id: event.id,
    version: event.version,
    action: event.action,
    timestamp: new Date(event.timestamp.getTime()),
  };
  if (event.actor !== undefined) out.actor = event.actor;
  return out;
}
