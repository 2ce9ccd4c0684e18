import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script from `./scripts/NAME.lua` (copied next to the compiled module at build).
 * Runs by EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted or flushed server
 * (which forgets loaded scripts) costs one extra round trip, never a failure.
 */
export class LuaScript {
  /** File name without `.lua`. */
  readonly name: string;
  /** The script text (with its includes). */
  readonly lua: string;
  /** Its SHA1, for EVALSHA. */
  readonly sha: string;

  constructor(name: string) {
    this.name = name;
    // `--#include NAME` lines pull in `./scripts/lib/NAME.lua` (Lua code shared by scripts).
    this.lua = readFileSync(new URL(`./scripts/${name}.lua`, import.meta.url), 'utf8').replace(
      /^--#include ([a-z-]+)$/gm,
      (_, lib: string) => readFileSync(new URL(`./scripts/lib/${lib}.lua`, import.meta.url), 'utf8'),
    );
    this.sha = createHash('sha1').update(this.lua).digest('hex');
  }

  /** Runs the script with `keys` and `args` on `client`: EVALSHA, then EVAL when the server does not know it. */
  async run(client: Redis, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (isNoScript(err)) {
        return client.eval(this.lua, keys.length, ...keys, ...args);
      }
      throw err;
    }
  }
}

/** True for the error Redis answers EVALSHA with when it does not know the script. */
export function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

/** Loads every script once per process. */
function load<const N extends string>(names: readonly N[]): Record<N, LuaScript> {
  const out = {} as Record<N, LuaScript>;
  for (const name of names) out[name] = new LuaScript(name);
  return out;
}

/** The state store's scripts (the transport's are in `./commands.ts`). */
export const SCRIPTS = load([
  'get-document',
  'commit-document',
  'get-history',
  'commit-workflow',
  'lock-acquire',
  'lock-renew',
  'lock-release',
] as const);
