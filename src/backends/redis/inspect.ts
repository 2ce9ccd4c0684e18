import type { Redis } from 'ioredis';
import type { LeaseInfo, QueueInspection } from '../../bus/transport.js';
import { decodeMessage, type Message } from '../../message.js';
import type { QueueKeys } from './commands.js';

/**
 * What a queue holds, by plain reads (no script, nothing moved): counts per priority band of
 * `ready` (order = (10 - priority) * 2^40 + seq) plus delayed ones by their body, the front of
 * each band (FIFO, so the oldest of it) for the oldest age, and the leases by deadline with their
 * holders (body field `<id>:h` = `<attempt>|<holder>`, written by the lease script; one left from
 * an earlier attempt is not this lease's).
 */
export async function inspectQueue(client: Redis, keys: QueueKeys, limit: number): Promise<QueueInspection> {
  const BAND = 2 ** 40;
  const pipe = client.pipeline();
  for (let p = 10; p >= 0; p--) {
    const lo = (10 - p) * BAND;
    pipe.zcount(keys.ready, String(lo), `(${lo + BAND}`);
    pipe.zrangebyscore(keys.ready, String(lo), `(${lo + BAND}`, 'LIMIT', 0, 1);
  }
  pipe.zrange(keys.delayed, '0', '999');
  pipe.zrange(keys.inflight, '0', String(limit - 1), 'WITHSCORES');
  const replies = (await pipe.exec()) ?? [];
  const value = (i: number): unknown => {
    const [err, v] = replies[i] ?? [null, null];
    if (err) throw err;
    return v;
  };
  const byPriority = new Array<number>(11).fill(0);
  const fronts: string[] = [];
  for (let i = 0; i < 11; i++) {
    byPriority[10 - i] = Number(value(2 * i));
    const front = (value(2 * i + 1) as string[])[0];
    if (front !== undefined) fronts.push(front);
  }
  const delayed = value(22) as string[];
  const inflight = value(23) as string[];
  const leasedIds = inflight.filter((_, i) => i % 2 === 0);
  const ids = [...fronts, ...delayed, ...leasedIds, ...leasedIds.map((id) => `${id}:h`)];
  const bodies = ids.length === 0 ? [] : await client.hmget(keys.body, ...ids);
  const messageAt = (i: number): Message | null => {
    const body = bodies[i];
    if (typeof body !== 'string') return null; // moved on between the reads
    try {
      return decodeMessage(body.slice(body.indexOf('|') + 1));
    } catch {
      return null;
    }
  };
  let oldest: number | null = null;
  for (let i = 0; i < fronts.length + delayed.length; i++) {
    const m = messageAt(i);
    if (m === null) continue;
    if (i >= fronts.length) byPriority[m.priority] = (byPriority[m.priority] ?? 0) + 1;
    const at = m.timestamp.getTime();
    if (oldest === null || at < oldest) oldest = at;
  }
  const leases: QueueInspection['leases'] = [];
  for (let j = 0; j < leasedIds.length; j++) {
    const m = messageAt(fronts.length + delayed.length + j);
    const score = inflight[2 * j + 1] ?? '0';
    if (m === null) continue;
    const n = Number(score);
    const lease: LeaseInfo = { message: m, attempt: n % 1024, token: score, deadline: Math.floor(n / 1024) };
    const held = bodies[fronts.length + delayed.length + leasedIds.length + j];
    const bar = typeof held === 'string' ? held.indexOf('|') : -1;
    // The attempt in the score stops at 1023 (the rest is in tries): compare as far as it goes.
    if (bar > 0 && Math.min(Number(held!.slice(0, bar)), 1023) === lease.attempt) lease.holder = held!.slice(bar + 1);
    leases.push(lease);
  }
  return { byPriority, oldestWaitingAt: oldest, leases };
}
