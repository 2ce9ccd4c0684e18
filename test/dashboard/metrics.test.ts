import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageBus, MemoryTransport, StateManager, MessageType, defineAgent } from '../../src/index.js';
import type { Transport } from '../../src/bus/transport.js';
import type { StateStore } from '../../src/state/store.js';
import { resolveStore, resolveTransport } from '../../src/connect.js';
import { BackendObserver, createConcordMetrics } from '../../src/dashboard/index.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, rawClient, redisNamespace, redisUrl } from '../redis/helpers.js';
import { familyOf, parseExposition } from './helpers.js';

const up = await serviceAvailable('redis');

describe.runIf(up)('Prometheus metrics over a Redis bus and a SQLite state', () => {
  const ns = redisNamespace('metrics');
  const dir = mkdtempSync(join(tmpdir(), 'concord-metrics-'));
  let transport: Transport;
  let store: StateStore;
  let state: StateManager;
  let bus: MessageBus;
  let observer: BackendObserver;

  beforeAll(async () => {
    transport = await resolveTransport(redisUrl(ns));
    await transport.connect();
    store = await resolveStore(`sqlite:${join(dir, 'state.db')}`);
    await store.connect();
    state = new StateManager({ store });
    bus = new MessageBus({ transport, state, maxAttempts: 2, backoff: { initialMs: 20, jitter: 0 } });
    observer = new BackendObserver({ transport, store, deadLetterPollMs: 50 });
    await observer.start();
  });

  afterAll(async () => {
    await observer?.close();
    await bus?.close();
    await state?.close();
    await store?.close();
    await transport?.close();
    await cleanupNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  it('exposes queue, traffic, dead-letter, state and delivery metrics with conventional names, types and bounded labels', async () => {
    const metrics = await createConcordMetrics({ observer, buses: [bus] });
    let handled = 0;
    bus.registerAgent(
      'writer',
      metrics.instrumentAgent(
        defineAgent({
          name: 'writer',
          async handleMessage(message, ctx) {
            if ((message.payload as { fail?: boolean }).fail) throw new Error('cannot write this one');
            await ctx.state!.createDocumentState({ documentId: `doc-${handled}`, topic: 'metrics', content: 'hello\n', actor: 'writer' });
            handled++;
          },
        }),
      ),
    );
    await bus.ready();
    // Waiting messages the collector must see: an agent nobody consumes, at two priorities.
    await transport.addRecipient('idle');
    await bus.send({ sender: 'test', recipient: 'idle', type: MessageType.TASK, payload: {}, priority: 9 });
    await bus.send({ sender: 'test', recipient: 'idle', type: MessageType.TASK, payload: {}, priority: 2 });
    await bus.send({ sender: 'test', recipient: 'writer', type: MessageType.TASK, payload: {} });
    await bus.send({ sender: 'test', recipient: 'writer', type: MessageType.TASK, payload: { fail: true } });
    await waitFor(() => handled === 1, 'the writer to handle its task');
    await waitFor(async () => (await transport.listDeadLetters()).length === 1, 'the failing task to be dead-lettered');
    await waitFor(() => observer.deadLetters().length === 1, 'the observer to see the dead letter', 5000);

    const e = parseExposition(await metrics.text());
    const value = (name: string, labels: Record<string, string> = {}) =>
      e.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

    expect(e.types.get('concord_queue_messages')).toBe('gauge');
    expect(value('concord_queue_messages', { queue: 'idle', state: 'ready' })).toBe(2);
    expect(value('concord_queue_messages', { queue: 'idle', state: 'leased' })).toBe(0);
    expect(value('concord_queue_messages', { queue: 'writer', state: 'delayed' })).toBe(0);
    expect(new Set(e.samples.filter((s) => s.name === 'concord_queue_messages').map((s) => s.labels['state']))).toEqual(
      new Set(['ready', 'delayed', 'leased']),
    );
    expect(e.types.get('concord_queue_oldest_message_age_seconds')).toBe('gauge');
    expect(value('concord_queue_oldest_message_age_seconds', { queue: 'idle' })).toBeGreaterThan(0);
    expect(value('concord_queue_oldest_message_age_seconds', { queue: 'writer' })).toBe(0);

    expect(e.types.get('concord_messages_sent_total')).toBe('counter');
    expect(value('concord_messages_sent_total', { type: 'task' })).toBeGreaterThanOrEqual(4);
    expect(e.types.get('concord_messages_acked_total')).toBe('counter');
    expect(value('concord_messages_acked_total')).toBeGreaterThanOrEqual(1);
    expect(e.types.get('concord_messages_redelivered_total')).toBe('counter');
    expect(value('concord_messages_redelivered_total')).toBe(1);
    expect(e.types.get('concord_messages_dead_lettered_total')).toBe('counter');
    expect(value('concord_messages_dead_lettered_total', { reason: 'max_attempts' })).toBe(1);
    expect(e.types.get('concord_dead_letters')).toBe('gauge');
    expect(value('concord_dead_letters', { reason: 'max_attempts' })).toBe(1);

    expect(e.types.get('concord_state_commits_total')).toBe('counter');
    expect(value('concord_state_commits_total', { kind: 'document', action: 'create' })).toBe(1);
    expect(e.types.get('concord_state_conflicts_total')).toBe('counter');

    for (const name of ['concord_message_wait_duration_seconds', 'concord_message_process_duration_seconds']) {
      expect(e.types.get(name)).toBe('histogram');
      expect(value(`${name}_count`, { queue: 'writer' })).toBeGreaterThanOrEqual(1);
      expect(e.samples.some((s) => s.name === `${name}_bucket` && s.labels['le'] === '+Inf')).toBe(true);
    }
    expect(value('concord_message_process_duration_seconds_count', { queue: 'writer', outcome: 'error' })).toBe(2);
    expect(value('concord_message_process_duration_seconds_count', { queue: 'writer', outcome: 'ok' })).toBe(1);

    // Conventions: every sample belongs to a typed family; no gauge is named _total; every counter is.
    for (const s of e.samples) expect(familyOf(e, s.name), s.name).toBeDefined();
    for (const [name, type] of e.types) {
      expect(name.startsWith('concord_')).toBe(true);
      if (type === 'gauge') expect(name.endsWith('_total'), name).toBe(false);
      if (type === 'counter') expect(name.endsWith('_total'), name).toBe(true);
      expect(e.help.get(name)?.length, name).toBeGreaterThan(10);
    }
    // Bounded labels only: no message id, correlation id or payload ever becomes a label.
    const labelNames = new Set(e.samples.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(
      ['action', 'kind', 'le', 'outcome', 'queue', 'reason', 'state', 'type'].filter((l) => labelNames.has(l)),
    );
    expect(labelNames.has('id')).toBe(false);
  });

  it('inspectQueue on Redis reports waiting messages by priority, the oldest one and the leases with their deadline', async () => {
    await transport.addRecipient('inspect');
    const first = await bus.send({ sender: 'test', recipient: 'inspect', type: MessageType.TASK, payload: {}, priority: 1 });
    await bus.send({ sender: 'test', recipient: 'inspect', type: MessageType.TASK, payload: {}, priority: 7 });
    await bus.send({ sender: 'test', recipient: 'inspect', type: MessageType.TASK, payload: {}, priority: 7 });
    const leased = await transport.lease('inspect', { leaseMs: 30_000, waitMs: 0 });
    expect(leased).toHaveLength(1);
    const info = await transport.inspectQueue!('inspect');
    expect(info.byPriority).toEqual([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    expect(info.oldestWaitingAt).toBe(first.timestamp.getTime());
    expect(info.leases).toHaveLength(1);
    expect(info.leases[0]!.message.id).toBe(leased[0]!.message.id);
    expect(info.leases[0]!.attempt).toBe(1);
    expect(info.leases[0]!.token).toBe(leased[0]!.token);
    // The stored deadline is the server's clock plus the lease; the lease's, this process's.
    expect(Math.abs(info.leases[0]!.deadline - leased[0]!.deadline)).toBeLessThan(1000);
    expect(await transport.listQueues!()).toEqual(expect.arrayContaining(['idle', 'inspect', 'writer']));
  });

  it('inspectQueue on Redis reports who holds each lease, and forgets it once the lease is settled', async () => {
    await transport.addRecipient('held');
    for (let i = 0; i < 3; i++) await bus.send({ sender: 'test', recipient: 'held', type: MessageType.TASK, payload: { i } });
    const [mine] = await transport.lease('held', { leaseMs: 30_000, waitMs: 0, consumer: 'host-a:101:bus1' });
    const [theirs] = await transport.lease('held', { leaseMs: 30_000, waitMs: 0, consumer: 'host-b:202:bus2' });
    const holders = async () => Object.fromEntries((await transport.inspectQueue!('held')).leases.map((l) => [l.message.id, l.holder]));
    expect(await holders()).toEqual({ [mine!.message.id]: 'host-a:101:bus1', [theirs!.message.id]: 'host-b:202:bus2' });
    // A lease given back and taken again by another consumer is that consumer's.
    expect(await transport.requeue(mine!, { delayMs: 0 })).toBe(true);
    const [again] = await transport.lease('held', { leaseMs: 30_000, waitMs: 0, consumer: 'host-c:303:bus3' });
    expect(again!.message.id).toBe(mine!.message.id);
    expect((await holders())[mine!.message.id]).toBe('host-c:303:bus3');
    // Settled leases leave no holder record behind.
    expect(await transport.ack(again!)).toBe(true);
    expect(await transport.ack(theirs!)).toBe(true);
    const [last] = await transport.lease('held', { leaseMs: 30_000, waitMs: 0, consumer: 'host-a:101:bus1' });
    const letter = { message: last!.message, queue: 'held', reason: 'max_attempts' as const, attempts: 1, deadAt: new Date() };
    expect(await transport.deadLetter(letter, last!)).toBe(true);
    const probe = rawClient();
    await probe.connect();
    try {
      expect(await probe.hkeys(`concord:{${ns}}:q:held:body`)).toEqual([]);
    } finally {
      probe.disconnect();
    }
  });
});

describe('inspection on the memory transport', () => {
  it('lists its recipients and its leases with their deadline', async () => {
    const transport = new MemoryTransport();
    const bus = new MessageBus({ transport });
    try {
      await transport.addRecipient('b');
      await transport.addRecipient('a');
      await bus.send({ sender: 'test', recipient: 'a', type: MessageType.TASK, payload: {} });
      const [lease] = await transport.lease('a', { leaseMs: 10_000, waitMs: 0 });
      expect(await transport.listQueues()).toEqual(['a', 'b']);
      const info = await transport.inspectQueue('a');
      expect(info.leases).toEqual([{ message: lease!.message, attempt: 1, token: lease!.token, deadline: lease!.deadline }]);
      expect(info.byPriority).toBeNull();
      // A lease call that names its consumer: the lease is reported as held by it.
      await bus.send({ sender: 'test', recipient: 'a', type: MessageType.TASK, payload: {} });
      const [held] = await transport.lease('a', { leaseMs: 20_000, waitMs: 0, consumer: 'host:42:bus' });
      const later = await transport.inspectQueue('a');
      expect(later.leases.find((l) => l.token === held!.token)?.holder).toBe('host:42:bus');
    } finally {
      await bus.close();
      await transport.close();
    }
  });
});
