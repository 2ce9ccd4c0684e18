import { InvalidArgumentError, type Command } from 'commander';

/** A commander parser for an integer option in [min, max]. */
export function integer(name: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer ${min}..${max}, got \`${value}\``);
    }
    return n;
  };
}

/** A commander parser for a number in [0, 1]. */
export function fraction(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
      throw new InvalidArgumentError(`${name} must be a number between 0 and 1, got \`${value}\``);
    }
    return n;
  };
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Adds `--state <url>`. */
export function withState(cmd: Command): Command {
  return cmd.option(
    '--state <url>',
    'state store: sqlite:./path.db, redis://host:6379/0, memory:// (default: sqlite:./.concord/concord.db, or $CONCORD_STATE)',
  );
}

/** Adds `--bus <url>`. */
export function withBus(
  cmd: Command,
  description = 'message bus: memory:// or redis://host:6379/0 (default: memory://, or $CONCORD_BUS)',
): Command {
  return cmd.option('--bus <url>', description);
}

/** Adds `--json`. */
export function withJson(cmd: Command): Command {
  return cmd.option('--json', 'print JSON instead of text');
}
