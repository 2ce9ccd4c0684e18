import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { TransportError } from '../../errors.js';
import type { RedisConfig } from './connection.js';

/**
 * The major version of Concord's wire protocol on Redis (docs/PROTOCOL.md): the key layout, the
 * stored forms and the published functions `concord_v1_*`. A namespace records it at
 * `concord:{NAMESPACE}:protocol`; a client of another major refuses the namespace.
 */
export const PROTOCOL_MAJOR = 1;

/** The published function library (`#!lua name=concord_v1`), loaded with FUNCTION LOAD. */
export const FUNCTION_LIBRARY = 'concord_v1';

/** Its code, as shipped next to this module. */
export const FUNCTION_CODE = readFileSync(new URL(`./functions/${FUNCTION_LIBRARY}.lua`, import.meta.url), 'utf8');

/** The `REVISION` a library's code declares (0 when it declares none). */
export function libraryRevision(code: string): number {
  const match = /^local REVISION = (\d+)$/m.exec(code);
  return match === null ? 0 : Number(match[1]);
}

const OUR_REVISION = libraryRevision(FUNCTION_CODE);

/** The protocol key of the namespace `prefix` (`concord:{NAMESPACE}:`) names: KEYS[1] of every `concord_v1_*` call. */
export function protocolKey(prefix: string): string {
  return prefix + 'protocol';
}

/**
 * Run once per connection of a transport, before anything else: checks the namespace's protocol
 * version (recording `1` in a namespace that has none) and refuses one of another major with a
 * `TransportError` saying so; then makes sure the server has the `concord_v1` functions foreign
 * clients call, loading them (FUNCTION LOAD REPLACE) only when the loaded code differs and is not
 * of a newer revision. A server without Functions (Redis < 7) or an account not allowed to load
 * them still serves this transport, which runs its own scripts: only foreign clients need them.
 */
export async function ensureProtocol(client: Redis, config: RedisConfig): Promise<void> {
  try {
    await checkProtocol(client, config);
  } catch (err) {
    client.disconnect(); // as a failed connect leaves it: the next connect() starts over
    throw err;
  }
}

async function checkProtocol(client: Redis, config: RedisConfig): Promise<void> {
  const key = protocolKey(config.prefix);
  let version: string | null;
  try {
    const replies = await client.pipeline().set(key, String(PROTOCOL_MAJOR), 'NX').get(key).exec();
    const got = replies?.[1];
    if (got === undefined || got[0] !== null) throw got?.[0] ?? new Error('no reply');
    version = got[1] as string | null;
  } catch (err) {
    throw new TransportError(
      config.url,
      `reading the protocol version of namespace \`${config.namespace}\` failed: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (version !== String(PROTOCOL_MAJOR)) {
    throw new TransportError(
      config.url,
      `namespace \`${config.namespace}\` speaks Concord wire protocol ${JSON.stringify(version)} (key ${key}); ` +
        `this Concord speaks protocol ${PROTOCOL_MAJOR} and will not read or write it: use a Concord release of that major version, or another namespace`,
    );
  }
  try {
    await installFunctions(client);
  } catch (err) {
    throw new TransportError(config.url, `loading the ${FUNCTION_LIBRARY} function library failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Loads the function library unless the server already has this code or a newer revision. */
async function installFunctions(client: Redis): Promise<void> {
  try {
    const listed = (await client.call('FUNCTION', 'LIST', 'LIBRARYNAME', FUNCTION_LIBRARY, 'WITHCODE')) as unknown[];
    const loaded = loadedCode(listed);
    if (loaded === FUNCTION_CODE || (loaded !== undefined && libraryRevision(loaded) > OUR_REVISION)) return;
    await client.call('FUNCTION', 'LOAD', 'REPLACE', FUNCTION_CODE);
  } catch (err) {
    // No Functions on this server (Redis < 7: unknown command), or not allowed (ACL): this
    // transport does not need them; a foreign client's FCALL then fails with Redis' own error.
    if (err instanceof Error && /unknown command|NOPERM|unknown subcommand/i.test(err.message)) return;
    throw err;
  }
}

/** The `library_code` of the one library FUNCTION LIST ... WITHCODE answered with, if any. */
function loadedCode(listed: unknown[]): string | undefined {
  for (const lib of listed) {
    if (!Array.isArray(lib)) continue;
    const at = lib.indexOf('library_name');
    if (at < 0 || lib[at + 1] !== FUNCTION_LIBRARY) continue;
    const code = lib.indexOf('library_code');
    return code < 0 ? undefined : String(lib[code + 1]);
  }
  return undefined;
}
