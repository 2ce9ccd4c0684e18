import { ValidationError } from '../errors.js';

/**
 * Boundary guards for the state manager. Each throws `ValidationError` naming the field, what
 * was expected and what came; inside the manager the types are then trusted.
 */

/** Longest id accepted for a document, workflow or lock. */
export const MAX_ID_LENGTH = 512;

/** Renders a bad value for an error message: short, never throws. */
export function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') return value.length > 40 ? `\`${value.slice(0, 40)}…\` (string)` : `\`${value}\` (string)`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `\`${String(value)}\` (${typeof value})`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'function') return 'a function';
  if (value instanceof Date) return 'a Date';
  return typeof value === 'object' ? `an object of class ${value.constructor?.name ?? 'null-prototype'}` : typeof value;
}

/** An options argument: undefined or a plain object. */
export function optionsObject(value: unknown, what: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) throw new ValidationError(`${what} must be an object, got ${describe(value)}`, { field: what });
  return value;
}

/** A required options object (the single argument of most calls). */
export function requestObject(value: unknown, what: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new ValidationError(`${what} takes one options object, got ${describe(value)}`);
  return value;
}

/** True for `{}`-style objects (prototype Object or null), false for arrays, class instances and primitives. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A document, workflow or lock id: a non-empty string of at most `MAX_ID_LENGTH` characters. */
export function id(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new ValidationError(`${field} must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${describe(value)}`, {
      field,
    });
  }
  return value;
}

/** A non-empty string (actor, topic, stage). */
export function nonEmptyString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0) {
    throw new ValidationError(`${field} must be a non-empty string, got ${describe(value)}`, { field });
  }
  return value;
}

/** Any string, empty included (content). */
export function string(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new ValidationError(`${field} must be a string, got ${describe(value)}`, { field });
  return value;
}

/** An integer in 1..max (versions, limits). */
export function positiveInteger(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(`${field} must be an integer 1..${max}, got ${describe(value)}`, { field });
  }
  return value;
}

/** `positiveInteger`, or undefined when not given. */
export function optionalPositiveInteger(value: unknown, field: string, max?: number): number | undefined {
  return value === undefined ? undefined : positiveInteger(value, field, max);
}

/** An integer in 0..max (a version to page after), or undefined when not given. */
export function optionalNonNegativeInteger(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new ValidationError(`${field} must be an integer 0..${max}, got ${describe(value)}`, { field });
  }
  return value;
}

/** A duration in ms: a finite number > 0. */
export function duration(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError(`${field} must be a positive number of milliseconds, got ${describe(value)}`, { field });
  }
  return value;
}

/** `duration`, or undefined when not given. */
export function optionalDuration(value: unknown, field: string): number | undefined {
  return value === undefined ? undefined : duration(value, field);
}

/** A boolean, or undefined when not given. */
export function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw new ValidationError(`${field} must be a boolean, got ${describe(value)}`, { field });
  return value;
}

/** A function (handlers, lock bodies). */
export function fn<F extends (...args: never[]) => unknown>(value: unknown, field: string): F {
  if (typeof value !== 'function') throw new ValidationError(`${field} must be a function, got ${describe(value)}`, { field });
  return value as F;
}

/**
 * A plain JSON object (metadata, workflow data, context). Rejects values JSON cannot carry
 * faithfully (functions, symbols, bigint, non-finite numbers, undefined, class instances such
 * as Date, which JSON turns into a string) so what is stored is what is read back, on every backend.
 */
export function jsonObject(value: unknown, field: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new ValidationError(`${field} must be a plain object, got ${describe(value)}`, { field });
  const problem = findNonJson(value, field, new Set());
  if (problem) throw new ValidationError(`${field} must be JSON-serialisable: ${problem}`, { field });
  return value;
}

function findNonJson(value: unknown, path: string, seen: Set<object>): string | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : `${path} is ${String(value)}`;
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) return `${path} is a circular reference`;
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          for (let i = 0; i < value.length; i++) {
            const p = findNonJson(value[i], `${path}[${i}]`, seen);
            if (p) return p;
          }
          return null;
        }
        if (!isPlainObject(value)) return `${path} is ${describe(value)}`;
        for (const [k, v] of Object.entries(value)) {
          if (v === undefined) return `${path}.${k} is undefined (use null)`;
          const p = findNonJson(v, `${path}.${k}`, seen);
          if (p) return p;
        }
        return null;
      } finally {
        seen.delete(value);
      }
    }
    default:
      return `${path} is ${describe(value)}`;
  }
}

/** An array of strings (requirements). */
export function stringArray(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new ValidationError(`${field} must be an array of strings, got ${describe(value)}`, { field });
  }
  return [...value] as string[];
}

/** Document requirements: a list of strings or a JSON object. */
export function requirements(value: unknown): string[] | Record<string, unknown> {
  if (Array.isArray(value)) return stringArray(value, 'requirements');
  if (isPlainObject(value)) return jsonObject(value, 'requirements');
  throw new ValidationError(`requirements must be an array of strings or a plain object, got ${describe(value)}`, {
    field: 'requirements',
  });
}

/** Longest caller-given history summary. */
export const MAX_SUMMARY_LENGTH = 500;

/** An optional caller note for a history entry: a non-empty string of at most 500 characters. */
export function optionalSummary(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > MAX_SUMMARY_LENGTH) {
    throw new ValidationError(`summary must be a non-empty string of at most ${MAX_SUMMARY_LENGTH} characters, got ${describe(value)}`, {
      field: 'summary',
    });
  }
  return value;
}
