import { ValidationError } from './errors.js';

/**
 * Refusing unknown option names: `new MessageBus({ leaseMS: 5 })` would otherwise run with the
 * default lease and never say why. Each caller lists the names it knows (a const array typed
 * against its options interface, so adding an option without listing it fails to compile).
 */

/** Levenshtein distance of two short strings. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/** The known name `name` most likely misspells (case-insensitive, a few edits at most), if any. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Throws a ValidationError naming the first key of `options` that `known` does not list, with the
 * known name it most likely misspells. `what` names the options in the message (`MessageBus options`).
 *
 * @example
 * checkOptionNames({ leaseMS: 5 }, ['leaseMs'], 'MessageBus options');
 * // ValidationError: MessageBus options: unknown option `leaseMS`; did you mean `leaseMs`?
 */
export function checkOptionNames(options: object, known: readonly string[], what: string): void {
  for (const key in options) {
    if (!known.includes(key)) throw unknownOption(key, known, what);
  }
}

function unknownOption(key: string, known: readonly string[], what: string): ValidationError {
  const guess = closestName(key, known);
  const hint = guess !== undefined ? `did you mean \`${guess}\`?` : `known options: ${known.map((k) => `\`${k}\``).join(', ')}`;
  return new ValidationError(`${what}: unknown option \`${key}\`; ${hint}`, { field: key });
}

/**
 * The list of option names of `T`, checked at compile time to name every key of `T` (an option
 * added to the interface and not to the list fails to compile) and nothing else.
 *
 * @example
 * const CLOSE_OPTIONS = optionNames<CloseOptions>()(['drainTimeoutMs']);
 */
export function optionNames<T>() {
  return <const K extends readonly (keyof T & string)[]>(
    names: K & ([Exclude<keyof T & string, K[number]>] extends [never] ? unknown : { missing: Exclude<keyof T & string, K[number]> }),
  ): readonly string[] => names;
}

/**
 * For objects that may legitimately carry fields of their own (an agent object with its
 * helpers): throws only for a key that is not known but is a near miss of a known one
 * (`concurency` for `concurrency`).
 */
export function checkMisspeltNames(object: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key) || key.length < 5) continue;
    const guess = closestName(key, known);
    if (guess !== undefined) throw new ValidationError(`${what}: unknown field \`${key}\`; did you mean \`${guess}\`?`, { field: key });
  }
}
