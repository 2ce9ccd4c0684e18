import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateManager } from '../../src/index.js';
import { PRIORITY_MAX } from '../../src/mcp/index.js';
import { SERVICES, serviceAvailable, testNamespace } from '../helpers/services.js';
import { cleanupNamespace } from '../redis/helpers.js';
import { requireBuild, tempDir } from '../cli/helpers.js';
import { call, callError, connectStdio, type AgentClient } from './helpers.js';

const redisUp = await serviceAvailable('redis');

describe.runIf(redisUp)('concord mcp: two LLM clients as two agents on one bus', () => {
  const tmp = tempDir('concord-mcp-');
  const ns = testNamespace('mcp');
  const bus = `${SERVICES.redis.url}?namespace=${ns}`;
  const state = `sqlite:${join(tmp.dir, 'state.db')}`;
  let alice: AgentClient;
  let bob: AgentClient;

  beforeAll(async () => {
    requireBuild();
    // bob first: alice's first send needs bob registered on the bus.
    bob = await connectStdio('bob', { bus, state, cwd: tmp.dir });
    alice = await connectStdio('alice', { bus, state, cwd: tmp.dir });
  });
  afterAll(async () => {
    await alice?.close();
    await bob?.close();
    await cleanupNamespace(ns);
    tmp.cleanup();
  });

  it('offers the bus and state tools, with input schemas built from the library constants', async () => {
    const { tools } = await alice.client.listTools();
    const names = tools.map((t) => t.name).sort();
    expect(names).toEqual(
      [
        'ack_message',
        'advance_workflow',
        'create_document',
        'document_diff',
        'document_history',
        'extend_lease',
        'list_dead_letters',
        'nack_message',
        'publish',
        'read_document',
        'read_workflow',
        'receive_message',
        'reply',
        'request',
        'send_message',
        'update_document',
      ].sort(),
    );
    const send = tools.find((t) => t.name === 'send_message')!;
    const props = send.inputSchema.properties as Record<string, Record<string, unknown>>;
    expect(props['priority']).toMatchObject({ type: 'integer', minimum: 0, maximum: PRIORITY_MAX, default: 5 });
    expect(props['type']?.['enum']).toEqual(['task', 'result', 'status', 'error', 'feedback', 'control']);
    expect(send.inputSchema.required).toEqual(['recipient', 'payload']);
  });

  it('completes a request/response: alice requests, bob receives it with a lease and replies', async () => {
    const asked = call(alice.client, 'request', { recipient: 'bob', payload: { question: 'sum', a: 2, b: 3 }, timeoutMs: 20_000 });
    const got = await call(bob.client, 'receive_message', { timeoutMs: 20_000 });
    expect(got['message']).toMatchObject({
      type: 'task',
      sender: 'alice',
      recipient: 'bob',
      payload: { question: 'sum', a: 2, b: 3 },
      attempt: 1,
    });
    expect(got['expectsReply']).toBe(true);
    expect(Date.parse(got['leaseDeadline'])).toBeGreaterThan(Date.now());
    const requestId = got['message']['id'] as string;

    const replied = await call(bob.client, 'reply', { messageId: requestId, payload: { sum: 5 } });
    expect(replied['acked']).toBe(true);
    const { reply } = await asked;
    expect(reply).toMatchObject({ type: 'result', sender: 'bob', payload: { sum: 5 }, correlationId: requestId });
    expect(reply.headers.inReplyTo).toBe(requestId);

    // Settled: nothing left in bob's queue, and the delivery is no longer held.
    expect(await call(bob.client, 'receive_message', { timeoutMs: 0 })).toEqual({ message: null });
    const notHeld = await callError(bob.client, 'ack_message', { messageId: requestId });
    expect(notHeld).toMatchObject({ code: 'validation', field: 'messageId' });
    expect(notHeld['message']).toContain(`holds no delivery of message \`${requestId}\``);
  });

  it('an error reply makes the request fail with remote_error and the payload', async () => {
    const asked = alice.client.callTool({
      name: 'request',
      arguments: { recipient: 'bob', payload: { question: 'divide', by: 0 }, timeoutMs: 20_000 },
    });
    const got = await call(bob.client, 'receive_message', { timeoutMs: 20_000 });
    await call(bob.client, 'reply', { messageId: got['message']['id'], payload: { message: 'cannot divide by zero' }, type: 'error' });
    const result = await asked;
    expect(result.isError).toBe(true);
    expect((result.structuredContent as any).error).toMatchObject({
      code: 'remote_error',
      sender: 'bob',
      requestId: got['message']['id'],
      payload: { message: 'cannot divide by zero' },
    });
  });

  it('receive_message blocks until a message comes, and a nacked message comes back as attempt 2', async () => {
    let settled = false;
    const waiting = call(bob.client, 'receive_message', { timeoutMs: 20_000 }).finally(() => (settled = true));
    // Nothing is queued for bob: his call must still be waiting (not answered "no message") when alice sends.
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe(false);
    const sent = await call(alice.client, 'send_message', { recipient: 'bob', type: 'status', payload: { progress: 0.5 }, priority: 9 });
    const first = await waiting;
    expect(first['message']).toMatchObject({ id: sent['message']['id'], type: 'status', priority: 9, attempt: 1 });
    expect(first['expectsReply']).toBe(false);

    expect(await call(bob.client, 'nack_message', { messageId: sent['message']['id'], error: 'not now', delayMs: 0 })).toMatchObject({
      nacked: sent['message']['id'],
    });
    const again = await call(bob.client, 'receive_message', { timeoutMs: 10_000 });
    expect(again['message']).toMatchObject({ id: sent['message']['id'], attempt: 2 });
    const extended = await call(bob.client, 'extend_lease', { messageId: sent['message']['id'], leaseMs: 120_000 });
    expect(Date.parse(extended['leaseDeadline'])).toBeGreaterThan(Date.now() + 100_000);
    expect(await call(bob.client, 'ack_message', { messageId: sent['message']['id'] })).toEqual({ acked: sent['message']['id'] });
  });

  it('a conflicting concurrent edit fails with state_conflict, then merges', async () => {
    const documentId = `doc-${ns}`;
    const created = await call(alice.client, 'create_document', { documentId, topic: 'merging', content: 'intro\nbody\nend\n' });
    expect(created['document']).toMatchObject({ version: 1 });

    // Both read version 1.
    const readA = await call(alice.client, 'read_document', { documentId });
    const readB = await call(bob.client, 'read_document', { documentId });
    expect(readA['document']['version']).toBe(1);
    expect(readB['document']['version']).toBe(1);

    const byAlice = await call(alice.client, 'update_document', {
      documentId,
      content: 'intro, by alice\nbody\nend\n',
      expectedVersion: 1,
    });
    expect(byAlice['document']['version']).toBe(2);

    const conflict = await callError(bob.client, 'update_document', {
      documentId,
      content: 'intro\nbody\nend, by bob\n',
      expectedVersion: 1,
    });
    expect(conflict).toMatchObject({
      code: 'state_conflict',
      name: 'StateConflictError',
      documentId,
      expectedVersion: 1,
      actualVersion: 2,
      current: { documentId, version: 2, content: 'intro, by alice\nbody\nend\n' },
    });
    expect(conflict['message']).toBe(`document \`${documentId}\` is at version 2, expected version 1`);

    const merged = await call(bob.client, 'update_document', {
      documentId,
      content: 'intro\nbody\nend, by bob\n',
      expectedVersion: 1,
      merge: true,
    });
    expect(merged['document']).toMatchObject({ version: 3, content: 'intro, by alice\nbody\nend, by bob\n' });
    expect(merged['change']).toMatchObject({ version: 3, actor: 'bob', action: 'merge' });

    const { history } = await call(alice.client, 'document_history', { documentId });
    expect(history.map((h: any) => [h.version, h.actor, h.action])).toEqual([
      [1, 'alice', 'create'],
      [2, 'alice', 'update_content'],
      [3, 'bob', 'merge'],
    ]);
    const diff = await call(alice.client, 'document_diff', { documentId, fromVersion: 1 });
    expect(diff).toMatchObject({ fromVersion: 1, toVersion: 3, added: 2, removed: 2 });
    expect(diff['diff']).toContain('-intro\n+intro, by alice\n');
    expect(diff['diff']).toContain('-end\n+end, by bob\n');
    expect((await call(bob.client, 'read_document', { documentId, version: 2 }))['document']['content']).toBe(
      'intro, by alice\nbody\nend\n',
    );
  });

  it('reads and advances a workflow that an orchestrator created', async () => {
    const workflowId = `wf-${ns}`;
    const manager = new StateManager({ store: state });
    try {
      await manager.createWorkflowState({ workflowId, stages: ['draft', 'review'] });
    } finally {
      await manager.close();
    }
    expect((await call(bob.client, 'read_workflow', { workflowId }))['workflow']).toMatchObject({
      stage: null,
      pendingStages: ['draft', 'review'],
    });
    await call(bob.client, 'advance_workflow', { workflowId, stage: 'draft' });
    const done = await call(bob.client, 'advance_workflow', { workflowId, stage: 'draft', action: 'complete', qualityScore: 0.8 });
    expect(done['workflow']).toMatchObject({ completedStages: ['draft'], qualityScores: { draft: 0.8 } });
    const bad = await callError(bob.client, 'advance_workflow', { workflowId, stage: 'publish' });
    expect(bad).toMatchObject({ code: 'validation' });
  });

  it('every failure is a tool error with the library code and message, and the server carries on', async () => {
    const priority = await callError(alice.client, 'send_message', { recipient: 'bob', payload: {}, priority: PRIORITY_MAX + 1 });
    expect(priority).toMatchObject({
      code: 'validation',
      field: 'priority',
      message: `priority must be an integer 0..10, got \`${PRIORITY_MAX + 1}\``,
    });
    const type = await callError(alice.client, 'send_message', { recipient: 'bob', payload: {}, type: 'shout' });
    expect(type).toMatchObject({ code: 'validation', field: 'type' });
    expect(type['message']).toMatch(/^type must be one of task, result, status, error, feedback, control, got the string `'shout'`/);
    const payload = await callError(alice.client, 'send_message', { recipient: 'bob', payload: 'hello' });
    expect(payload).toMatchObject({
      code: 'validation',
      field: 'payload',
      message: "payload must be a JSON object or array, got the string `'hello'`",
    });

    const nobody = await callError(alice.client, 'send_message', { recipient: 'nobody', payload: { x: 1 } });
    expect(nobody).toMatchObject({ code: 'recipient_not_found', recipient: 'nobody' });
    const { deadLetters } = await call(alice.client, 'list_dead_letters', {});
    expect(deadLetters).toContainEqual(
      expect.objectContaining({ reason: 'recipient_not_found', message: expect.objectContaining({ id: nobody['messageId'] }) }),
    );

    expect(await callError(alice.client, 'read_document', { documentId: 'no-such-doc' })).toMatchObject({ code: 'document_not_found' });
    expect(await callError(alice.client, 'request', { recipient: 'bob', payload: {}, timeoutMs: 200 })).toMatchObject({
      code: 'request_timeout',
      timeoutMs: 200,
    });
    // The unanswered request is still in bob's queue: take it out so later tests start clean.
    const stale = await call(bob.client, 'receive_message', { timeoutMs: 5_000 });
    await call(bob.client, 'ack_message', { messageId: stale['message']['id'] });

    // Still serving.
    expect(await call(alice.client, 'publish', { type: 'status', topic: 'progress', payload: { ok: true } })).toMatchObject({
      message: { sender: 'alice', recipient: '', headers: expect.objectContaining({ topic: 'progress' }) },
    });
  });

  it('a client that disconnects hands its unsettled message back at once, not after the lease', async () => {
    const bob2 = await connectStdio('bob', { bus, state, cwd: tmp.dir, extra: ['--lease', '600000'] });
    try {
      const sent = await call(alice.client, 'send_message', { recipient: 'bob', payload: { job: 'held' } });
      const held = await call(bob2.client, 'receive_message', { timeoutMs: 10_000 });
      expect(held['message']['id']).toBe(sent['message']['id']);
      await bob2.close();
      // The lease was 10 minutes: only the release on shutdown makes it come back this soon.
      const back = await call(bob.client, 'receive_message', { timeoutMs: 10_000 });
      expect(back['message']).toMatchObject({ id: sent['message']['id'], attempt: 2 });
      await call(bob.client, 'ack_message', { messageId: sent['message']['id'] });
    } finally {
      await bob2.close();
    }
  });
});
