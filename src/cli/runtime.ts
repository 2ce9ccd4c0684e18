import { existsSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { TransportError, ValidationError, redactUrl } from '../errors.js';
import type { Transport } from '../bus/transport.js';
import type { StateStore } from '../state/store.js';
import { parseSqliteUrl } from '../backends/sqlite/store.js';
import { parseBackendUrl } from '../backends/url.js';
import { resolveStore, resolveTransport, TRANSPORT_URLS } from '../connect.js';
import { MessageBus } from '../bus/bus.js';
import { StateManager } from '../state/index.js';

/** Where the state lives unless `--state` or `CONCORD_STATE` says otherwise (relative to the cwd). */
export const DEFAULT_STATE_URL = 'sqlite:./.concord/concord.db';
/** The bus unless `--bus` or `CONCORD_BUS` says otherwise: in-process, agents in the same process. */
export const DEFAULT_BUS_URL = 'memory://';
/** How long a backend may take to answer its first connection. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The package's root directory (holds `package.json` and `samples/`), from this file's location. */
export function packageRoot(): string {
  // dist/cli/runtime.js and src/cli/runtime.ts are both two levels below the root.
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** The bundled sample sources used by `concord demo`. */
export function samplesDir(): string {
  return resolve(packageRoot(), 'samples', 'sources');
}

/** `--state` value, `CONCORD_STATE`, or the default SQLite file. */
export function stateUrl(option: string | undefined): string {
  return option ?? process.env['CONCORD_STATE'] ?? DEFAULT_STATE_URL;
}

/** `--bus` value, `CONCORD_BUS`, or the in-process memory bus. */
export function busUrl(option: string | undefined): string {
  return option ?? process.env['CONCORD_BUS'] ?? DEFAULT_BUS_URL;
}

/** The file path of a `sqlite:` URL (as its one parser, `parseSqliteUrl`, reads it), or null for other schemes and `:memory:`. */
export function sqlitePath(url: string): string | null {
  if (!/^sqlite:/i.test(url)) return null;
  const { filename } = parseSqliteUrl(url);
  return filename === ':memory:' ? null : filename;
}

/** The levels `CONCORD_LOG_LEVEL` takes, and the names people also try (`verbose`, `warning`). */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const LOG_LEVEL_ALIASES: Record<string, (typeof LOG_LEVELS)[number]> = {
  verbose: 'debug',
  warning: 'warn',
  all: 'trace',
  off: 'silent',
  none: 'silent',
};

/** A log level name as pino knows it: case-insensitive, common aliases mapped, anything else refused. */
export function logLevel(value: string): (typeof LOG_LEVELS)[number] {
  const v = value.trim().toLowerCase();
  const level = (LOG_LEVELS as readonly string[]).includes(v) ? (v as (typeof LOG_LEVELS)[number]) : LOG_LEVEL_ALIASES[v];
  if (level === undefined) {
    throw new ValidationError(`CONCORD_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (or verbose = debug), got \`${value}\``, {
      field: 'CONCORD_LOG_LEVEL',
    });
  }
  return level;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** One readable line per log entry: `12:00:01 INFO  message  key=value ...` (for a terminal). */
export function prettyLogLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const { level, time, msg, pid: _pid, hostname: _host, ...rest } = entry;
  const at = typeof time === 'number' ? new Date(time).toISOString().slice(11, 19) : '';
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  return `${at} ${(LEVEL_NAMES[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${fields ? `  ${fields}` : ''}`;
}

/**
 * A logger for the bus, agents and runs: silent unless `CONCORD_LOG_LEVEL` asks (logs go to
 * stderr): readable lines on a terminal, JSON lines otherwise (for log collectors and tests).
 */
export function cliLogger(defaultLevel = 'silent'): Logger {
  const level = logLevel(process.env['CONCORD_LOG_LEVEL'] ?? defaultLevel);
  if (process.stderr.isTTY === true) {
    return pino({ level, base: { pid: process.pid } }, { write: (line: string) => void process.stderr.write(prettyLogLine(line) + '\n') });
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination(2));
}

async function withTimeout<T>(work: Promise<T>, url: string, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TransportError(url, `${what} did not answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } catch (err) {
    if (err instanceof TransportError || err instanceof ValidationError) throw err;
    throw new TransportError(url, `cannot open ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** An open state manager and the store under it (the CLI lists documents and workflows through the store). */
export interface OpenState {
  /** The URL it was opened on, credentials redacted (for showing). */
  url: string;
  store: StateStore;
  state: StateManager;
  close(): Promise<void>;
}

/**
 * Opens the state at `url`. `create` makes the directory of a SQLite file; without it a
 * missing SQLite file is an error (an inspection command on a state that was never written).
 */
export async function openState(url: string, options: { create: boolean }): Promise<OpenState> {
  const path = sqlitePath(url);
  if (path !== null) {
    if (options.create) {
      const dir = dirname(resolve(path));
      try {
        mkdirSync(dir, { recursive: true });
      } catch (err) {
        throw new TransportError(url, `cannot create the directory ${dir}: ${(err as Error).message}`, { cause: err });
      }
    } else if (!existsSync(path)) {
      throw new ValidationError(`no state at ${path} (nothing has run here yet: try \`concord demo\`, or pass --state URL)`, {
        field: 'state',
      });
    }
  }
  const store = await resolveStore(url);
  await withTimeout(store.connect(), url, 'the state store');
  const state = new StateManager({ store });
  return {
    url: redactUrl(url),
    store,
    state,
    async close() {
      // The manager leaves a store it was given open.
      await state.close().catch(() => {});
      await store.close();
    },
  };
}

/** An open bus and its transport. */
export interface OpenBus {
  /** The URL it was opened on, credentials redacted (for showing). */
  url: string;
  transport: Transport;
  bus: MessageBus;
  close(): Promise<void>;
}

/** Opens a bus on `url`, wiring `state` into agents' contexts when given. `leaseMs`: the bus's lease (default 60 000). */
export async function openBus(url: string, options: { state?: StateManager; logger?: Logger; leaseMs?: number } = {}): Promise<OpenBus> {
  const transport = await resolveTransport(url);
  await withTimeout(transport.connect(), url, 'the bus');
  const bus = new MessageBus({
    transport,
    ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
    ...(options.logger ? { logger: options.logger } : { logger: cliLogger() }),
    ...(options.state ? { state: options.state } : {}),
  });
  return {
    url: redactUrl(url),
    transport,
    bus,
    async close() {
      // The bus leaves a transport it was given open.
      await bus.close().catch(() => {});
      await transport.close();
    },
  };
}

/**
 * Checks a bus URL as `openBus` will read it (scheme, host, port, database, options), without
 * connecting: `ValidationError` naming `field` (its message redacts any password).
 */
export async function checkBusUrl(url: unknown, field: string): Promise<string> {
  try {
    if (typeof url !== 'string') throw new ValidationError(`must be a string, got ${url === null ? 'null' : typeof url}`);
    const parsed = parseBackendUrl(url, TRANSPORT_URLS);
    if (parsed.scheme !== 'memory') (await import('../backends/redis/connection.js')).parseRedisUrl(url);
    return url;
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw new ValidationError(`${field}: ${err.message}`, { field, cause: err });
  }
}

/** Whether a bus URL is shared between processes (anything but `memory://`). */
export function isSharedBus(url: string): boolean {
  return !/^memory:/i.test(url);
}

/**
 * How to call this CLI in a command printed for the user: `npx concord` where npx finds this
 * package (its own directory, or a project that depends on it); otherwise the script itself,
 * because `npx concord` elsewhere would fetch an unrelated package from the registry.
 */
export function cliCommand(): string {
  const root = packageRoot();
  const cwd = process.cwd();
  const inside = (dir: string) => {
    const rel = relative(dir, cwd);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  };
  if (inside(root) || existsSync(resolve(cwd, 'node_modules', '.bin', 'concord'))) return 'npx concord';
  const script = process.argv[1] ? resolve(process.argv[1]) : resolve(root, 'dist', 'cli', 'main.js');
  const rel = relative(cwd, script);
  const shown = rel.startsWith('..') || isAbsolute(rel) ? script : rel;
  return `${/\.ts$/.test(script) ? 'npx tsx' : 'node'} ${shown}`;
}
