import type { Redis } from 'ioredis';
import type { DeadLetter, EnqueueEntry, EnqueueResult, Lease } from '../../bus/transport.js';
import { decodeMessage, encodeMessage, type Message } from '../../message.js';
import { encodeDeadLetter, withoutOrder } from './codec.js';
import { keySegment } from './connection.js';
import { LuaScript } from './scripts.js';

/**
 * The transport's Lua scripts, each file named with its key count and opening with its KEYS/ARGV
 * (BullMQ's convention). Only `Scripts` below builds their arguments or reads their replies.
 */
export const QUEUE_SCRIPTS = {
  enqueue: new LuaScript('enqueue-2'),
  lease: new LuaScript('lease-6'),
  'ack-many': new LuaScript('ack-many-5'),
  requeue: new LuaScript('requeue-6'),
  'extend-lease': new LuaScript('extend-lease-5'),
  'dead-letter': new LuaScript('dead-letter-9'),
  'take-dead-letter': new LuaScript('take-dead-letter-3'),
  'claim-dead-letter': new LuaScript('claim-dead-letter-2'),
  'settle-dead-letter': new LuaScript('settle-dead-letter-3'),
  'list-dead-letters': new LuaScript('list-dead-letters-2'),
  'purge-dead-letters': new LuaScript('purge-dead-letters-3'),
  depth: new LuaScript('depth-3'),
} as const;

export type ScriptName = keyof typeof QUEUE_SCRIPTS;

/** One script call, ready to send. */
export interface Call {
  script: ScriptName;
  keys: readonly string[];
  args: (string | number)[];
}

/** An enqueue call: `count` entries, whose results are the reply's first `count` items. */
export interface EnqueueCall extends Call {
  count: number;
}

/** Keys of one queue (see scripts/enqueue-2.lua for what each holds). */
export interface QueueKeys {
  ready: string;
  delayed: string;
  inflight: string;
  signal: string;
  body: string;
  tries: string;
}

/** What one lease script call brought. */
export interface RoundResult {
  leases: Lease[];
  /** Ms until a delayed message becomes visible or a lease expires; -1 = nothing scheduled. */
  waitMs: number;
}

/** A leased entry whose stored body did not decode as a message (it is dead-lettered, never handed out). */
export interface MalformedEntry {
  idseg: string;
  body: string | null;
  attempt: number;
  token: string;
  error: unknown;
}

/** A lease reply read: its leases, whether messages are left ready, and the malformed entries. */
export interface LeaseReply extends RoundResult {
  remaining: number;
  malformed: MalformedEntry[] | undefined;
}

/** Most messages one lease script call takes. */
export const MAX_ROUND = 1000;

const ENQUEUED: EnqueueResult = Object.freeze({ status: 'enqueued' });
const NO_RECIPIENT: EnqueueResult = Object.freeze({ status: 'no_recipient' });

/**
 * Builds every transport script's KEYS and ARGV and reads every reply: the rest of the transport
 * never touches a Lua argument (as BullMQ's `Scripts` class). Pure: no connection, no state but
 * the key prefix.
 */
export class Scripts {
  readonly #prefix: string;
  readonly #channel: string;

  constructor(prefix: string) {
    this.#prefix = prefix;
    this.#channel = prefix + 'topic:';
  }

  /** The pub/sub channel of `topic` (`'*'`: the pattern every topic's channel matches). */
  channel(topic: string): string {
    return this.#channel + topic;
  }

  /**
   * The channel a subscriber of every topic (the pattern `channel('*')`) also subscribes to, plainly,
   * so that an enqueue can tell from `PUBSUB NUMSUB` that somebody in this namespace listens to all
   * topics (`PUBSUB NUMPAT` counts every pattern on the server, another tenant's too). Nothing is
   * published on it; no topic's channel has its name.
   */
  get allTopicsChannel(): string {
    return this.#prefix + 'all-topics';
  }

  /** The topic of a channel `channel(topic)` made. */
  topicOf(channel: string): string {
    return channel.slice(this.#channel.length);
  }

  queueKeys(queue: string): QueueKeys {
    const q = `${this.#prefix}q:${keySegment(queue)}:`;
    return {
      ready: q + 'ready',
      delayed: q + 'delayed',
      inflight: q + 'inflight',
      signal: q + 'signal',
      body: q + 'body',
      tries: q + 'tries',
    };
  }

  /** The list of a reply inbox. */
  inboxKey(queue: string): string {
    return `${this.#prefix}q:${keySegment(queue)}:list`;
  }

  /** The set of registered recipients. */
  get recipientsKey(): string {
    return this.#prefix + 'recipients';
  }

  /** One enqueue call for `batches` (their entries in order); see scripts/enqueue-2.lua. */
  enqueue(batches: readonly (readonly EnqueueEntry[])[]): EnqueueCall {
    const now = Date.now();
    let count = 0;
    // The topic channels entries publish on (their types), each named once.
    const channels: string[] = [];
    for (const entries of batches) {
      count += entries.length;
      for (const e of entries) {
        if (e.publish !== true) continue;
        const channel = this.#channel + e.message.type;
        if (!channels.includes(channel)) channels.push(channel);
      }
    }
    const args: (string | number)[] = [this.#prefix, count, channels.length, ...channels];
    let queue: string | undefined;
    for (const entries of batches) {
      for (const e of entries) {
        const m = e.message;
        // visibleAt is on this machine's clock; the script adds the delay to the server's.
        const delay = e.visibleAt > now ? Math.ceil(e.visibleAt - now) : 0;
        const dedupe = e.dedupeWindowMs > 0 ? Math.ceil(e.dedupeWindowMs) : 0;
        let meta = e.requireRecipient ? m.priority + 'r' : String(m.priority);
        if (e.publish === true) meta += 'p' + (channels.indexOf(this.#channel + m.type) + 1);
        if (delay > 0 || dedupe > 0) meta += `/${delay}/${dedupe}`;
        args.push(
          e.queue === queue ? '' : (queue = e.queue),
          keySegment(m.id),
          encodeMessage(m.attempt === 0 ? m : { ...m, attempt: 0 }),
          meta,
        );
      }
    }
    return { script: 'enqueue', keys: [this.#prefix + 'seq', this.#prefix + 'recipients'], args, count };
  }

  /** Adds to `call` the acks of `leases` (all of `queue`); returns where each lease's flag is in the reply's ack list. */
  withAcks(call: EnqueueCall, queue: string, leases: readonly Lease[]): number[] {
    const acks = ackArgs(leases);
    call.args.push(leases.length, keySegment(queue), ...acks.args);
    return acks.at;
  }

  /** The ack flags of an enqueue call that acked too (see `withAcks`). */
  ackedOf(call: EnqueueCall, reply: unknown): number[] {
    return ((reply as unknown[])[call.count] ?? []) as number[];
  }

  /** An enqueue reply as one result per entry of each batch. */
  enqueueResults(batches: readonly (readonly EnqueueEntry[])[], reply: unknown): EnqueueResult[][] {
    const raw = reply as unknown[];
    let i = 0;
    return batches.map((entries) =>
      entries.map((entry): EnqueueResult => {
        const r = raw[i++];
        if (r === 1) return ENQUEUED;
        if (r === 2) return NO_RECIPIENT;
        let original: Message;
        try {
          original = decodeMessage(String(r));
        } catch {
          original = entry.message;
        }
        return { status: 'duplicate', original };
      }),
    );
  }

  /** One ack-many call for `leases` of `queue`, and where each lease's flag is in its reply. */
  ackMany(queue: string, leases: readonly Lease[]): Call & { at: number[] } {
    const k = this.queueKeys(queue);
    const { args, at } = ackArgs(leases);
    return { script: 'ack-many', keys: [k.ready, k.inflight, k.signal, k.body, k.tries], args, at };
  }

  /** Per queue (by its inflight key), the consumer its leases are recorded as held by (`LeaseOptions.consumer`). */
  readonly #holders = new Map<string, string>();

  /** Leases of `queue` from now on are recorded as held by `consumer` (see `LeaseInfo.holder`). */
  holdAs(queue: string, consumer: string): void {
    this.#holders.set(this.queueKeys(queue).inflight, consumer);
  }

  lease(keys: QueueKeys, leaseMs: number, max: number): Call {
    return {
      script: 'lease',
      keys: [keys.ready, keys.delayed, keys.inflight, keys.signal, keys.body, keys.tries],
      args: [Math.min(max, MAX_ROUND), Math.ceil(leaseMs), this.#holders.get(keys.inflight) ?? ''],
    };
  }

  /**
   * A lease reply as leases of `queue` (see scripts/lease-6.lua): entries whose body does not
   * decode are listed apart, to be dead-lettered as malformed.
   */
  leaseReply(queue: string, leaseMs: number, reply: unknown): LeaseReply {
    const raw = reply as unknown[];
    const leases: Lease[] = [];
    const deadline = Date.now() + leaseMs;
    const first = String(raw[2]);
    const n = Number(raw[3]);
    // Messages leased before: their attempt and token, by position.
    let again: Map<number, [number, string]> | undefined;
    for (let j = 4 + 2 * n; j + 2 < raw.length; j += 3)
      (again ??= new Map()).set(Number(raw[j]) - 1, [Number(raw[j + 1]), String(raw[j + 2])]);
    let malformed: MalformedEntry[] | undefined;
    for (let k = 0; k < n; k++) {
      const body = withoutOrder(raw[5 + 2 * k]);
      const earlier = again?.get(k);
      const attempt = earlier === undefined ? 1 : earlier[0];
      const token = earlier === undefined ? first : earlier[1];
      try {
        const message = decodeMessage(body);
        message.attempt = attempt;
        leases.push({ queue, message, token, deadline });
      } catch (error) {
        (malformed ??= []).push({ idseg: raw[4 + 2 * k] as string, body, attempt, token, error });
      }
    }
    return { leases, waitMs: Number(raw[0]), remaining: Number(raw[1]), malformed };
  }

  /** Puts a leased message back after `delayMs`; `undo`: as if never leased (its attempt taken back). */
  requeue(lease: Lease, delayMs: number, undo: boolean): Call {
    const k = this.queueKeys(lease.queue);
    return {
      script: 'requeue',
      keys: [k.ready, k.delayed, k.inflight, k.signal, k.tries, k.body],
      args: [keySegment(lease.message.id), lease.token, Math.max(0, Math.ceil(delayMs)), undo ? '1' : '0'],
    };
  }

  extendLease(lease: Lease, ms: number): Call {
    const k = this.queueKeys(lease.queue);
    return {
      script: 'extend-lease',
      keys: [k.ready, k.inflight, k.signal, k.tries, k.body],
      args: [keySegment(lease.message.id), lease.token, Math.ceil(ms)],
    };
  }

  /** Stores `letter`; with `lease`, removes the leased message in the same step. */
  deadLetter(letter: DeadLetter, idseg: string, lease: Lease | undefined): Call {
    const p = this.#prefix;
    // Without a lease the queue keys are not touched; any queue's keys fill their places.
    const k = this.queueKeys(lease?.queue ?? letter.queue);
    const { json, attachBody } = encodeDeadLetter(letter);
    return {
      script: 'dead-letter',
      keys: [p + 'dlq', p + 'dlq:order', p + 'seq', k.ready, k.inflight, k.signal, k.body, k.tries, p + 'dlq:claims'],
      args: [letter.message.id, json, idseg, lease?.token ?? '', attachBody && lease !== undefined ? '1' : '0'],
    };
  }

  listDeadLetters(limit: number): Call {
    return { script: 'list-dead-letters', keys: [this.#prefix + 'dlq', this.#prefix + 'dlq:order'], args: [limit] };
  }

  takeDeadLetter(messageId: string): Call {
    const p = this.#prefix;
    return { script: 'take-dead-letter', keys: [p + 'dlq', p + 'dlq:order', p + 'dlq:claims'], args: [messageId] };
  }

  claimDeadLetter(messageId: string, claimMs: number, nonce: string): Call {
    return {
      script: 'claim-dead-letter',
      keys: [this.#prefix + 'dlq', this.#prefix + 'dlq:claims'],
      args: [messageId, Math.max(1, Math.ceil(claimMs)), nonce],
    };
  }

  settleDeadLetter(messageId: string, token: string, remove: boolean): Call {
    const p = this.#prefix;
    return {
      script: 'settle-dead-letter',
      keys: [p + 'dlq', p + 'dlq:order', p + 'dlq:claims'],
      args: [messageId, token, remove ? '1' : '0'],
    };
  }

  purgeDeadLetters(): Call {
    const p = this.#prefix;
    return { script: 'purge-dead-letters', keys: [p + 'dlq', p + 'dlq:order', p + 'dlq:claims'], args: [] };
  }

  depth(queue: string): Call {
    const k = this.queueKeys(queue);
    return { script: 'depth', keys: [k.ready, k.delayed, k.inflight], args: [] };
  }
}

/** Sends `call` on `client` by EVALSHA (the caller handles NOSCRIPT). */
export function evalsha(client: Redis, call: Call): Promise<unknown> {
  return client.evalsha(QUEUE_SCRIPTS[call.script].sha, call.keys.length, ...call.keys, ...call.args);
}

/**
 * The ack scripts' arguments for `leases` (see lib/ack.lua): grouped by lease token, which the
 * leases of one lease call share, so an ack costs one argument, not two; and, for each lease,
 * where its flag is in the reply.
 */
function ackArgs(leases: readonly Lease[]): { args: string[]; at: number[] } {
  const first = leases[0]!.token;
  if (leases.every((l) => l.token === first)) {
    const args = [first, String(leases.length)];
    const at: number[] = [];
    for (let i = 0; i < leases.length; i++) {
      args.push(keySegment(leases[i]!.message.id));
      at.push(i);
    }
    return { args, at };
  }
  const groups = new Map<string, number[]>();
  leases.forEach((l, i) => {
    const g = groups.get(l.token);
    if (g) g.push(i);
    else groups.set(l.token, [i]);
  });
  const args: string[] = [];
  const at = new Array<number>(leases.length);
  let pos = 0;
  for (const [token, members] of groups) {
    args.push(token, String(members.length));
    for (const i of members) {
      args.push(keySegment(leases[i]!.message.id));
      at[i] = pos++;
    }
  }
  return { args, at };
}
