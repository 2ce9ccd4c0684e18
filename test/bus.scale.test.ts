import { describe, expect, it } from 'vitest';
import { MemoryTransport } from '../src/backends/memory/transport.js';
import { BandedQueue } from '../src/backends/memory/heap.js';
import { DeadlineQueue } from '../src/bus/heap.js';
import { MessageBus } from '../src/bus/bus.js';
import type { Lease, LeaseOptions } from '../src/bus/transport.js';
import { MessageType } from '../src/message.js';

// Issue 25, item 1: agents are cheap. These tests assert the structure that makes them cheap
// (what an idle queue holds, how many abort signals the loops hand the transport, which waits an
// abort visits), not times; bench/scale/agents.mjs measures the times.

const STRIDE = 2 ** 43;

/** Resolves once `check()` holds; fails the test after 30 s. */
async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A memory transport that records the signals its `lease` calls were given. */
function recordingTransport(): { transport: MemoryTransport; signals: Set<AbortSignal> } {
  const transport = new MemoryTransport();
  const signals = new Set<AbortSignal>();
  const lease = transport.lease.bind(transport) as (queue: string, options: LeaseOptions) => Lease[] | Promise<Lease[]> | undefined;
  transport.lease = ((queue: string, options: LeaseOptions) => {
    if (options.signal !== undefined) signals.add(options.signal);
    return lease(queue, options);
  }) as MemoryTransport['lease'];
  return { transport, signals };
}

describe('agents at scale', () => {
  it('an idle priority queue allocates no ring until a message of that priority arrives', () => {
    const q = new BandedQueue<string>(11, STRIDE);
    expect(q.allocatedBands).toBe(0);
    expect(q.size).toBe(0);
    expect(q.pop()).toBeUndefined();
    q.push('p5', 5 * STRIDE + 1);
    q.push('p5 again', 5 * STRIDE + 2);
    expect(q.allocatedBands).toBe(1);
    q.push('p0', 0 * STRIDE + 3);
    expect(q.allocatedBands).toBe(2);
    expect([q.pop(), q.pop(), q.pop(), q.pop()]).toEqual(['p0', 'p5', 'p5 again', undefined]);
  });

  it('a band outside the queue is refused, not lost', () => {
    const q = new BandedQueue<string>(11, STRIDE);
    expect(() => q.push('x', 11 * STRIDE)).toThrow(RangeError);
    expect(q.size).toBe(0);
  });

  it('the consumer loops of many agents hand the transport one abort signal, not one each', async () => {
    const { transport, signals } = recordingTransport();
    const bus = new MessageBus({ transport });
    for (let i = 0; i < 200; i++) bus.registerAgent(`agent-${i}`, { name: `agent-${i}`, handleMessage: () => undefined });
    await bus.ready();
    const deadline = Date.now() + 10_000;
    while (signals.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(signals.size).toBe(1);
    await bus.close();
    await transport.close();
  });

  it('unregistering one agent ends its loop; the others keep receiving', async () => {
    const transport = new MemoryTransport();
    const bus = new MessageBus({ transport });
    const got: string[] = [];
    for (const name of ['a', 'b', 'c'])
      bus.registerAgent(name, { name, handleMessage: (m) => void got.push(`${name}:${String(m.payload.n)}`) });
    await bus.ready();
    expect(await bus.unregisterAgent('b')).toBe(true);
    await bus.send({ sender: 's', recipient: 'a', type: MessageType.STATUS, payload: { n: 1 } });
    await bus.send({ sender: 's', recipient: 'c', type: MessageType.STATUS, payload: { n: 2 } });
    const deadline = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(got.sort()).toEqual(['a:1', 'c:2']);
    await bus.close();
    await transport.close();
  });

  it('10,000 agents register, take a message each, and close', async () => {
    const transport = new MemoryTransport();
    const bus = new MessageBus({ transport });
    const n = 10_000;
    let handled = 0;
    for (let i = 0; i < n; i++) bus.registerAgent(`agent-${i}`, { name: `agent-${i}`, handleMessage: () => void handled++ });
    await bus.ready();
    for (let i = 0; i < n; i++) await bus.send({ sender: 's', recipient: `agent-${i}`, type: MessageType.STATUS, payload: { i } });
    const deadline = Date.now() + 30_000;
    while (handled < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(handled).toBe(n);
    expect(Object.keys(bus.metrics().agents).length).toBe(n);
    await bus.close();
    await transport.close();
  }, 60_000);

  it('an idle agent waits through a waiter: the transport answers its lease undefined, holding no promise for it', async () => {
    const transport = new MemoryTransport();
    const answers: unknown[] = [];
    const lease = transport.lease.bind(transport) as (queue: string, options: LeaseOptions) => unknown;
    transport.lease = ((queue: string, options: LeaseOptions) => {
      const answer = lease(queue, options);
      answers.push(answer);
      return answer;
    }) as MemoryTransport['lease'];
    const bus = new MessageBus({ transport });
    bus.registerAgent('idle', { name: 'idle', handleMessage: () => undefined });
    await bus.ready();
    await waitUntil(() => answers.length > 0, 'the first lease');
    expect(answers).toEqual([undefined]);
    await bus.close();
    await transport.close();
  });

  it('a message to one of 10,000 idle agents is handled by that agent alone, and close then resolves', async () => {
    const transport = new MemoryTransport();
    const bus = new MessageBus({ transport });
    const n = 10_000;
    const got: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = `agent-${i}`;
      bus.registerAgent(name, { name, handleMessage: (m) => void got.push(`${name}:${String(m.payload.n)}`) });
    }
    await bus.ready();
    await bus.send({ sender: 's', recipient: 'agent-7777', type: MessageType.STATUS, payload: { n: 1 } });
    await waitUntil(() => got.length > 0, 'the delivery');
    await bus.send({ sender: 's', recipient: 'agent-7777', type: MessageType.STATUS, payload: { n: 2 } });
    await waitUntil(() => got.length > 1, 'the second delivery');
    expect(got).toEqual(['agent-7777:1', 'agent-7777:2']);
    await bus.close();
    await transport.close();
  }, 60_000);

  it('an agent woken while 9,999 others idle gets the messages that woke it by priority, FIFO within one', async () => {
    const transport = new MemoryTransport();
    const bus = new MessageBus({ transport });
    const got: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const name = `agent-${i}`;
      bus.registerAgent(name, { name, handleMessage: (m) => void got.push(m.payload.n as number) });
    }
    await bus.ready();
    // One enqueue of six messages, so all are there when the waiting agent wakes.
    const priorities = [1, 9, 5, 9, 1, 5];
    await bus.sendBatch(
      priorities.map((priority, n) => ({ sender: 's', recipient: 'agent-4242', type: MessageType.STATUS, priority, payload: { n } })),
    );
    await waitUntil(() => got.length === priorities.length, 'six deliveries');
    expect(got).toEqual([1, 3, 2, 5, 0, 4]);
    await bus.close();
    await transport.close();
  }, 60_000);

  it('aborting a signal ends the waits it was given on every queue, and no others', async () => {
    const t = new MemoryTransport();
    const one = new AbortController();
    const other = new AbortController();
    const ended: string[] = [];
    const wait = (queue: string, signal: AbortSignal) =>
      Promise.resolve(t.lease(queue, { leaseMs: 1000, waitMs: Number.POSITIVE_INFINITY, signal })).then((l) => {
        ended.push(`${queue}:${l.length}`);
      });
    const waits = [wait('x', one.signal), wait('y', one.signal), wait('z', one.signal), wait('x', other.signal), wait('w', other.signal)];
    one.abort();
    await Promise.all(waits.slice(0, 3));
    expect(ended.sort()).toEqual(['x:0', 'y:0', 'z:0']);
    other.abort();
    await Promise.all(waits);
    expect(ended.length).toBe(5);
    await t.close();
  });
});

describe('outstanding requests at scale', () => {
  interface Item {
    deadline: number;
    heapIndex: number;
    slot: number;
    n: number;
  }
  const item = (deadline: number, n: number): Item => ({ deadline, heapIndex: -1, slot: -1, n });

  it('a deadline queue hands out the earliest deadline whatever the order of arrival and removal', () => {
    const q = new DeadlineQueue<Item>();
    const items = [item(10, 0), item(20, 1), item(20, 2), item(5, 3), item(30, 4), item(15, 5)];
    for (const it of items) q.push(it);
    expect(q.size).toBe(6);
    expect(q.peek()?.n).toBe(3); // arrived late, due first
    expect(q.remove(items[3] as Item)).toBe(true);
    expect(q.remove(items[3] as Item)).toBe(false);
    expect(q.peek()?.n).toBe(0);
    expect(q.remove(items[0] as Item)).toBe(true);
    expect(q.peek()?.n).toBe(5);
    q.remove(items[5] as Item);
    expect(q.peek()?.deadline).toBe(20);
    for (const it of items) q.remove(it);
    expect(q.size).toBe(0);
    expect(q.peek()).toBeUndefined();
  });

  it('removing requests answered out of order keeps no slot for them', () => {
    const q = new DeadlineQueue<Item>();
    // One request waits long at the front while 100,000 behind it come and go.
    const first = item(0, -1);
    q.push(first);
    for (let i = 0; i < 100_000; i++) {
      const it = item(i + 1, i);
      q.push(it);
      expect(q.remove(it)).toBe(true);
    }
    expect(q.size).toBe(1);
    expect(q.heldSlots).toBeLessThanOrEqual(1025);
    expect(q.peek()).toBe(first);
  });
});
