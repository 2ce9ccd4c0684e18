import type { Redis } from 'ioredis';
import { ClosedError } from '../../errors.js';
import { Coalescer } from './batch.js';
import { type Call, QUEUE_SCRIPTS, type ScriptName, evalsha } from './commands.js';
import { asTransportError, type RedisConfig } from './connection.js';
import { isNoScript } from './scripts.js';

/** Longest the command connection waits for calls a pump carried to be answered (see `afterFlush`). */
const CARRY_WAIT_MS = 1000;

/** A script call (or a PUBLISH) waiting for the next write of the command connection. */
export interface ScriptCall {
  name: ScriptName | 'publish';
  keys: readonly string[];
  args: readonly (string | number)[];
  /**
   * An enqueue without acks of its own, or an ack-many with the key segment of its queue: one of
   * each in the same write become one enqueue call that acks too (see `#fuse`).
   */
  fuse?: 'enqueue' | { ackSegment: string; count: number };
  resolve(reply: unknown): void;
  reject(err: unknown): void;
}

/** A pump waiting for the tick's commands to leave, or to be handed them (see `afterFlush`). */
interface AfterFlush {
  resolve(carry: ScriptCall[]): void;
  canCarry: (() => boolean) | undefined;
}

const NONE: ScriptCall[] = [];

/**
 * The command connection's scheduler. Every script call of one tick (an enqueue, 50 consumers'
 * acks, a prefetching lease) leaves in one pipelined write: on a busy host each socket write is a
 * system call worth saving, and Redis runs them back to back. Calls keep their order; concurrent
 * calls of one kind share one script call (`coalescer`). Autopipelining is off: it delays every
 * lone command, and this batches what is concurrent.
 */
export class CommandPipeline {
  readonly #client: Redis;
  readonly #config: RedisConfig;
  readonly #connect: () => Promise<void>;
  #closed = false;
  /** Script calls of the current tick: they leave in one write. */
  #calls: ScriptCall[] = [];
  /** Pump writes waiting for the tick's commands to leave first (or to carry them). */
  #afterFlush: AfterFlush[] = [];
  /** Settles once the calls a pump carried have their replies; the command connection waits for it. */
  #carried: Promise<void> | undefined;
  readonly #coalescers: Coalescer<unknown, unknown, unknown>[] = [];
  #flushScheduled = false;
  /**
   * Commands sent on the command connection whose replies have not come. Own bookkeeping: ioredis
   * keeps the same count in private fields, which are not ours to read.
   */
  #inFlight = 0;

  /** `connect` connects `client` (idempotent). */
  constructor(client: Redis, config: RedisConfig, connect: () => Promise<void>) {
    this.#client = client;
    this.#config = config;
    this.#connect = connect;
  }

  /** Calls of one tick on one key become one `run` (flushed right before the tick's write, so they share it). */
  coalescer<K, Req, Res>(run: (key: K, requests: Req[]) => Promise<Res[]>, maxBatch: number): Coalescer<K, Req, Res> {
    const c = new Coalescer<K, Req, Res>(run, maxBatch, () => this.schedule());
    this.#coalescers.push(c as unknown as Coalescer<unknown, unknown, unknown>);
    return c;
  }

  /** Runs `call` with the tick's write. `whileClosing`: still allowed after `close()` (undoing prefetched leases). */
  run(call: Call, whileClosing = false): Promise<unknown> {
    if (this.#closed && !whileClosing) return Promise.reject(new ClosedError('redis transport'));
    return new Promise<unknown>((resolve, reject) => this.push({ name: call.script, keys: call.keys, args: call.args, resolve, reject }));
  }

  /** PUBLISHes `data` on `channel` with the tick's write (cheaper for Redis than a script call). */
  publish(channel: string, data: string): Promise<unknown> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    return new Promise<unknown>((resolve, reject) => this.push({ name: 'publish', keys: [channel], args: [data], resolve, reject }));
  }

  /** Adds `calls` to the tick's write. */
  push(...calls: ScriptCall[]): void {
    this.#calls.push(...calls);
    this.schedule();
  }

  /**
   * A command of its own on the command connection (not a script: SADD, LPOP, a read for the
   * dashboard), counted as in flight while it is; failures name the URL and `what`.
   */
  async direct<T>(what: string, command: (client: Redis) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError('redis transport');
    await this.#connect();
    this.#inFlight++;
    try {
      return await command(this.#client);
    } catch (err) {
      throw asTransportError(this.#config, what, err);
    } finally {
      this.#inFlight--;
    }
  }

  /**
   * Resolves once the commands of the current tick have left, for a pump whose write goes after
   * them. A pump whose connection is ready (`canCarry`) may be handed the tick's commands instead,
   * to put in front of its own in one write: a responder's reply, the ack of the request and the
   * wait for the next one leave in one system call, as do a requester's next request and its
   * wait for the reply (a write costs tens of µs on a busy host). That happens only when the
   * command connection has nothing in flight, and its next write waits for the carried calls'
   * replies, so calls still run in the order they were made.
   */
  afterFlush(canCarry?: () => boolean): Promise<ScriptCall[]> {
    return new Promise<ScriptCall[]>((resolve) => {
      this.#afterFlush.push({ resolve, canCarry });
      this.schedule();
    });
  }

  /** Makes sure the tick's commands leave once the current chain of continuations has settled. */
  schedule(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    process.nextTick(this.flush);
  }

  /** Writes the tick's commands now (or hands them to a pump that carries them). */
  readonly flush = (): void => {
    // The coalesced calls of the tick join the direct ones in one write.
    for (const c of this.#coalescers) c.flush();
    this.#flushScheduled = false;
    const calls = fuse(this.#calls);
    this.#calls = [];
    const after = this.#afterFlush;
    let carrier: AfterFlush | undefined;
    if (calls.length > 0 && after.length > 0 && this.#idle()) carrier = after.find((a) => a.canCarry?.() === true);
    if (carrier !== undefined) this.#carry(calls, carrier);
    else if (calls.length > 0) void this.#send(calls);
    if (after.length > 0) {
      this.#afterFlush = [];
      for (const a of after) if (a !== carrier) a.resolve(NONE);
    }
  };

  /** Nothing sent on the command connection is waiting for its reply, and nothing carried either. */
  #idle(): boolean {
    return this.#carried === undefined && this.#inFlight === 0 && this.#client.status === 'ready';
  }

  /** Hands `calls` to a pump's write; the command connection's next write waits until they are answered. */
  #carry(calls: ScriptCall[], to: AfterFlush): void {
    let left = calls.length;
    let done!: () => void;
    const carried = new Promise<void>((resolve) => (done = resolve));
    this.#carried = carried;
    const one = () => {
      if (--left > 0) return;
      if (this.#carried === carried) this.#carried = undefined;
      done();
    };
    const wrapped = calls.map(
      (c): ScriptCall => ({
        ...c,
        resolve: (reply) => {
          one();
          c.resolve(reply);
        },
        reject: (err) => {
          one();
          c.reject(err);
        },
      }),
    );
    to.resolve(wrapped);
  }

  async #send(calls: ScriptCall[]): Promise<void> {
    const client = this.#client;
    try {
      // Calls a pump carried run first (they were made first). A pump connection that stopped
      // answering holds the command connection back for at most CARRY_WAIT_MS.
      if (this.#carried !== undefined) await waitAtMost(this.#carried, CARRY_WAIT_MS);
      // Closing still lets out what was queued before (undoing prefetched leases), until QUIT.
      await this.#connect();
    } catch (err) {
      for (const c of calls) c.reject(err);
      return;
    }
    this.#inFlight += calls.length;
    // One write for all (each reply still settles its own call as soon as it arrives).
    corked(client, () => {
      for (const c of calls) this.issue(client, c, this.#answered);
    });
  }

  readonly #answered = (): void => {
    this.#inFlight--;
  };

  /**
   * Sends one call on `client` (no waiting: the caller corks), settling it when its reply comes;
   * `answered` is told first.
   */
  issue(client: Redis, c: ScriptCall, answered?: () => void): void {
    const reply =
      c.name === 'publish'
        ? client.publish(c.keys[0]!, String(c.args[0]))
        : client.evalsha(QUEUE_SCRIPTS[c.name].sha, c.keys.length, ...c.keys, ...c.args);
    const resolve =
      answered === undefined
        ? c.resolve
        : (r: unknown) => {
            answered();
            c.resolve(r);
          };
    const reject = (err: unknown) => {
      answered?.();
      c.reject(asTransportError(this.#config, c.name, err));
    };
    reply.then(resolve, (err: unknown) => {
      // A restarted server forgot the script: EVAL it (which loads it for next time).
      if (c.name !== 'publish' && isNoScript(err)) QUEUE_SCRIPTS[c.name].run(client, c.keys, c.args).then(resolve, reject);
      else reject(err);
    });
  }

  /** Sends `call` on a pump's `client` by EVALSHA; the reply as it comes (NOSCRIPT included: see `loadScript`). */
  evalOn(client: Redis, call: Call): Promise<unknown> {
    return evalsha(client, call);
  }

  /** Fails calls that could not be sent. */
  fail(calls: readonly ScriptCall[], err: unknown): void {
    for (const c of calls) c.reject(asTransportError(this.#config, c.name, err));
  }

  /** Loads a script the server forgot (a restart) through the command connection. */
  async loadScript(name: ScriptName): Promise<void> {
    await this.direct('script load', (client) => client.script('LOAD', QUEUE_SCRIPTS[name].lua));
  }

  /** From now on only calls made `whileClosing` are taken. */
  close(): void {
    this.#closed = true;
  }
}

/**
 * Joins the first plain enqueue of a write and its first ack-many into one enqueue call that
 * acks too (a requester's next request and the ack of the reply it just got): Redis runs one
 * script instead of two, which costs more than either script's own work. The ack runs right
 * after the enqueue instead of later in the same write, and the two fail together; neither
 * depends on the other.
 */
function fuse(calls: ScriptCall[]): ScriptCall[] {
  if (calls.length < 2) return calls;
  let e = -1;
  let a = -1;
  for (let i = 0; i < calls.length && (e < 0 || a < 0); i++) {
    const f = calls[i]!.fuse;
    if (f === undefined) continue;
    if (f === 'enqueue') {
      if (e < 0) e = i;
    } else if (a < 0) a = i;
  }
  if (e < 0 || a < 0) return calls;
  const enq = calls[e]!;
  const ack = calls[a]!;
  const { ackSegment, count } = ack.fuse as { ackSegment: string; count: number };
  const fused: ScriptCall = {
    name: 'enqueue',
    keys: enq.keys,
    args: [...enq.args, count, ackSegment, ...ack.args],
    resolve: (reply) => {
      const raw = reply as unknown[];
      enq.resolve(raw);
      ack.resolve(raw[raw.length - 1]);
    },
    reject: (err) => {
      enq.reject(err);
      ack.reject(err);
    },
  };
  const out = calls.filter((_, i) => i !== a);
  out[e < a ? e : e - 1] = fused;
  return out;
}

/** Resolves when `p` settles or after `ms`, whichever comes first. */
function waitAtMost(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * Runs `issue` with `client`'s socket corked, so every command it sends leaves in one write
 * (one system call) while each keeps its own reply promise. Without a live socket the commands
 * simply queue in the client as usual.
 */
export function corked(client: Redis, issue: () => void): void {
  const stream = client.status === 'ready' ? client.stream : undefined;
  if (stream === undefined || typeof stream.cork !== 'function') {
    issue();
    return;
  }
  stream.cork();
  try {
    issue();
  } finally {
    stream.uncork();
  }
}
