import { ValidationError } from '../errors.js';

// Typed messages: a payload schema is anything that implements Standard Schema v1
// (https://standardschema.dev; zod 4, valibot and arktype do), checked at the door.

/** One problem a Standard Schema reports. */
export interface SchemaIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** What a Standard Schema's `validate` answers. */
export type SchemaResult<O> = { readonly value: O; readonly issues?: undefined } | { readonly issues: ReadonlyArray<SchemaIssue> };

/** The Standard Schema v1 interface, as far as Concord uses it. */
export interface SchemaLike<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => SchemaResult<Output> | Promise<SchemaResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** What a value is after `S` validated it (`Fallback` when there is no schema). */
export type InferOutput<S, Fallback = unknown> = S extends SchemaLike<unknown, infer O> ? O : Fallback;
/** What `S` accepts (`Fallback` when there is no schema). */
export type InferInput<S, Fallback = unknown> = S extends SchemaLike<infer I, unknown> ? I : Fallback;

/** Whether `value` is a Standard Schema. */
export function isSchema(value: unknown): value is SchemaLike {
  const std = (value as { '~standard'?: { validate?: unknown } } | null | undefined)?.['~standard'];
  return typeof std === 'object' && std !== null && typeof std.validate === 'function';
}

/** Checks an optional `{ input, output }` schema option; undefined when absent. */
export function checkSchemaOption(
  option: unknown,
  what: string,
): { input?: SchemaLike | undefined; output?: SchemaLike | undefined } | undefined {
  if (option === undefined) return undefined;
  const o = option as { input?: unknown; output?: unknown };
  if (
    option === null ||
    typeof option !== 'object' ||
    (o.input !== undefined && !isSchema(o.input)) ||
    (o.output !== undefined && !isSchema(o.output))
  ) {
    throw new ValidationError(
      `${what} must be \`{ input?, output? }\` of Standard Schemas (zod, valibot, arktype...), got ${String(option)}`,
      {
        field: 'schema',
      },
    );
  }
  return o as { input?: SchemaLike; output?: SchemaLike };
}

/**
 * `value` as `schema` validated it (a schema may transform, e.g. fill defaults), or a
 * `ValidationError` naming the first failing field (`payload.items.0.name`). Schemas must validate
 * synchronously: the door is on the send path.
 */
export function validateWith<S extends SchemaLike>(schema: S, value: unknown, field: string): InferOutput<S> {
  const result = schema['~standard'].validate(value);
  if (result instanceof Promise) {
    result.catch(() => undefined);
    throw new ValidationError(`${field}: the schema validates asynchronously; Concord needs a synchronous schema`, { field });
  }
  if (result.issues === undefined) return result.value as InferOutput<S>;
  const [first] = result.issues;
  const path = first?.path?.map((p) => String(typeof p === 'object' ? p.key : p)) ?? [];
  const where = [field, ...path].join('.');
  const more = result.issues.length > 1 ? ` (and ${result.issues.length - 1} more)` : '';
  throw new ValidationError(`${where}: ${first?.message ?? 'invalid'}${more}`, { field: where });
}

/** Failures that a retry cannot mend (a payload its agent's input schema refuses): dead-lettered at once. */
const finalFailures = new WeakSet<object>();

/** Marks `error` as final (see `isFinalFailure`). */
export function markFinal<E extends object>(error: E): E {
  finalFailures.add(error);
  return error;
}

/** Whether a delivery failing with `error` should skip its remaining attempts. */
export function isFinalFailure(error: unknown): boolean {
  return typeof error === 'object' && error !== null && finalFailures.has(error);
}
