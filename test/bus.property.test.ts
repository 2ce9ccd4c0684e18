/**
 * Property: random sequences of send / receive / ack / nack / lease expiry / crashed consumer /
 * failing push handler, over thousands of messages in all, end with every message acknowledged
 * exactly once or dead-lettered (none lost), and each receive returns exactly the message a model
 * of the contract predicts: the highest priority (FIFO within one) among those available then.
 *
 * Time is faked (vitest fake timers), so lease expiry and backoff are exact and the run is fast.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { MessageType } from '../src/message.js';
import { MessageBus, type Delivery } from '../src/bus/index.js';
import { defineAgent } from '../src/bus/agent.js';

const MAX_ATTEMPTS = 3;
const LEASE_MS = 1_000;
const BACKOFF = { initialMs: 100, factor: 2, maxMs: 800, jitter: 0 };
const backoff = (attempt: number): number => Math.min(BACKOFF.maxMs, BACKOFF.initialMs * BACKOFF.factor ** (attempt - 1));

type Command =
  | { kind: 'send'; to: 'pull' | 'push'; priority: number; ttlMs: number | null; explicitId: boolean; repeatOf: number | null }
  | { kind: 'receive' }
  | { kind: 'ack'; pick: number }
  | { kind: 'nack'; pick: number; delayMs: number | null }
  | { kind: 'crash'; pick: number }
  | { kind: 'advance'; ms: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      to: fc.constantFrom('pull' as const, 'pull' as const, 'push' as const),
      priority: fc.integer({ min: 0, max: 10 }),
      ttlMs: fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3_000 }) }),
      explicitId: fc.boolean(),
      repeatOf: fc.oneof({ weight: 10, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ kind: 'receive' as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('ack' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('nack' as const), pick: fc.nat(), delayMs: fc.option(fc.integer({ min: 0, max: 500 })) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 500, max: 2_500 })),
    }),
  },
);

/** The model of one pull-queue message. */
interface Model {
  id: string;
  priority: number;
  seq: number;
  sentAt: number;
  ttlMs: number | null;
  state: 'available' | 'leased' | 'acked' | 'dead';
  visibleAt: number;
  deadline: number;
  leases: number;
  deadReason?: 'max_attempts' | 'expired';
}

interface Held {
  delivery: Delivery;
  model: Model;
  lease: number;
  deadline: number;
}

/** A push handler failure decided by id and attempt, so a run is reproducible. */
function pushFails(id: string, attempt: number): boolean {
  let h = attempt * 31;
  for (let i = 0; i < id.length; i++) h = (h * 33 + id.charCodeAt(i)) >>> 0;
  return h % 3 === 0;
}

let totalMessages = 0;

describe('bus property: nothing lost, nothing acked twice, priority kept', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: 1_700_000_000_000 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(() => {
    // The issue asks for thousands of messages over the runs.
    expect(totalMessages).toBeGreaterThan(5_000);
  });

  it('holds for random sequences of operations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 150, maxLength: 400 }), async (commands) => {
        const bus = new MessageBus({ maxAttempts: MAX_ATTEMPTS, leaseMs: LEASE_MS, backoff: BACKOFF, dedupeWindowMs: 3_600_000 });
        const pushSucceeded = new Map<string, number>();
        const pushIds = new Set<string>();
        bus.registerAgent('pull');
        bus.registerAgent(
          'push',
          defineAgent({
            name: 'push',
            concurrency: 2,
            handleMessage(m) {
              if (pushFails(m.id, m.attempt)) throw new Error(`crash ${m.attempt}`);
              pushSucceeded.set(m.id, (pushSucceeded.get(m.id) ?? 0) + 1);
            },
          }),
        );
        try {
          await bus.ready();
          await run();
        } finally {
          await bus.close({ drainTimeoutMs: 0 });
        }

        async function run(): Promise<void> {
          const models = new Map<string, Model>();
          const sentIds: string[] = [];
          /** Ids the producer chose itself: a later send with one of them is a duplicate. */
          const explicitIds: string[] = [];
          const trueAcks = new Map<string, number>();
          let held: Held[] = [];
          let seq = 0;
          const now = (): number => Date.now();

          /** Which pull message the contract says the next receive returns (dead-lettering the refused ones). */
          const predict = (): Model | null => {
            const t = now();
            for (;;) {
              let best: Model | null = null;
              for (const m of models.values()) {
                const available = (m.state === 'available' && m.visibleAt <= t) || (m.state === 'leased' && m.deadline <= t);
                if (!available) continue;
                if (best === null || m.priority > best.priority || (m.priority === best.priority && m.seq < best.seq)) best = m;
              }
              if (best === null) return null;
              best.leases++;
              if (best.ttlMs !== null && best.sentAt + best.ttlMs < t) {
                best.state = 'dead';
                best.deadReason = 'expired';
                continue;
              }
              if (best.leases > MAX_ATTEMPTS) {
                best.state = 'dead';
                best.deadReason = 'max_attempts';
                continue;
              }
              best.state = 'leased';
              best.deadline = t + LEASE_MS;
              return best;
            }
          };

          const receive = async (): Promise<void> => {
            const expected = predict();
            const d = await bus.receive('pull');
            if (expected === null) {
              expect(d).toBeNull();
              return;
            }
            expect(d?.id).toBe(expected.id);
            expect(d?.attempt).toBe(expected.leases);
            held.push({ delivery: d as Delivery, model: expected, lease: expected.leases, deadline: expected.deadline });
          };

          const takeHeld = (pick: number): Held | undefined => {
            if (held.length === 0) return undefined;
            const [h] = held.splice(pick % held.length, 1);
            return h;
          };
          const stillOwned = (h: Held): boolean => h.model.state === 'leased' && h.model.leases === h.lease && h.deadline > now();

          for (const c of commands) {
            switch (c.kind) {
              case 'send': {
                const repeat = c.repeatOf !== null && explicitIds.length > 0 ? explicitIds[c.repeatOf % explicitIds.length] : undefined;
                const ownId = repeat === undefined && c.explicitId ? `producer-${seq}-${explicitIds.length}` : undefined;
                const input = {
                  sender: 'producer',
                  recipient: c.to,
                  type: MessageType.TASK,
                  payload: { n: seq },
                  priority: c.priority,
                  ...(c.ttlMs !== null ? { ttlMs: c.ttlMs } : {}),
                  ...(repeat !== undefined ? { id: repeat } : ownId !== undefined ? { id: ownId } : {}),
                };
                const m = await bus.send(input);
                if (repeat !== undefined) {
                  expect(m.id).toBe(repeat); // a duplicate: the first message, nothing enqueued
                  break;
                }
                sentIds.push(m.id);
                if (ownId !== undefined) {
                  expect(m.id).toBe(ownId);
                  explicitIds.push(ownId);
                }
                totalMessages++;
                if (c.to === 'push') pushIds.add(m.id);
                else
                  models.set(m.id, {
                    id: m.id,
                    priority: c.priority,
                    seq: seq,
                    sentAt: now(),
                    ttlMs: c.ttlMs,
                    state: 'available',
                    visibleAt: now(),
                    deadline: 0,
                    leases: 0,
                  });
                seq++;
                break;
              }
              case 'receive':
                await receive();
                break;
              case 'ack': {
                const h = takeHeld(c.pick);
                if (h === undefined) break;
                const owned = stillOwned(h);
                expect(await h.delivery.ack()).toBe(owned);
                if (owned) {
                  h.model.state = 'acked';
                  trueAcks.set(h.model.id, (trueAcks.get(h.model.id) ?? 0) + 1);
                }
                break;
              }
              case 'nack': {
                const h = takeHeld(c.pick);
                if (h === undefined) break;
                const owned = stillOwned(h);
                expect(await h.delivery.nack(new Error('nope'), c.delayMs === null ? undefined : { delayMs: c.delayMs })).toBe(owned);
                if (owned) {
                  if (h.lease >= MAX_ATTEMPTS) {
                    h.model.state = 'dead';
                    h.model.deadReason = 'max_attempts';
                  } else {
                    h.model.state = 'available';
                    h.model.visibleAt = now() + (c.delayMs ?? backoff(h.lease));
                  }
                }
                break;
              }
              case 'crash':
                takeHeld(c.pick); // the consumer is gone: its lease will run out
                break;
              case 'advance':
                await vi.advanceTimersByTimeAsync(c.ms);
                break;
            }
          }

          // Drain: let every lease and backoff run out, take and ack whatever comes, until nothing is left.
          held = [];
          for (let round = 0; round < 50; round++) {
            await vi.advanceTimersByTimeAsync(LEASE_MS + BACKOFF.maxMs + 1);
            for (;;) {
              const before = held.length;
              await receive();
              if (held.length === before) break;
              const h = held.pop() as Held;
              expect(await h.delivery.ack()).toBe(true);
              h.model.state = 'acked';
              trueAcks.set(h.model.id, (trueAcks.get(h.model.id) ?? 0) + 1);
            }
            const pushSettled = pushSucceeded.size + (await bus.getDeadLetters()).filter((l) => l.queue === 'push').length === pushIds.size;
            const pullSettled = [...models.values()].every((m) => m.state === 'acked' || m.state === 'dead');
            if (pushSettled && pullSettled) break;
          }

          const letters = await bus.getDeadLetters();
          const deadById = new Map(letters.map((l) => [l.message.id, l]));
          expect(deadById.size).toBe(letters.length);
          for (const m of models.values()) {
            if (m.state === 'acked') {
              expect(trueAcks.get(m.id)).toBe(1);
              expect(deadById.has(m.id)).toBe(false);
            } else {
              expect(m.state).toBe('dead');
              expect(trueAcks.has(m.id)).toBe(false);
              expect(deadById.get(m.id)?.reason).toBe(m.deadReason);
            }
          }
          for (const id of pushIds) {
            const succeeded = pushSucceeded.get(id) ?? 0;
            const dead = deadById.get(id);
            expect(succeeded + (dead ? 1 : 0)).toBe(1);
            if (dead?.reason === 'expired')
              expect(dead.message.ttlMs).toBeDefined(); // a retry came after its ttl
            else if (dead) expect(dead).toMatchObject({ reason: 'max_attempts', attempts: MAX_ATTEMPTS, error: `crash ${MAX_ATTEMPTS}` });
          }
          expect(letters.length).toBe(
            [...models.values()].filter((m) => m.state === 'dead').length + [...pushIds].filter((id) => deadById.has(id)).length,
          );
          expect(bus.metrics().deadLetters).toBe(letters.length);
        }
      }),
      { numRuns: 150 },
    );
  });
});
