import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageBus, MessageType, StateManager } from '../../src/index.js';
import { validatePriority, validateType } from '../../src/message.js';
import { createMcpServer, LeasedDeliveries, MESSAGE_TYPES, PRIORITY_MAX, PRIORITY_MIN } from '../../src/mcp/index.js';
import { waitFor } from '../helpers/services.js';
import { call, callError } from './helpers.js';

describe('tool schemas and the library agree', () => {
  it('the advertised priority range is exactly the one the library accepts', () => {
    expect(validatePriority(PRIORITY_MIN)).toBe(PRIORITY_MIN);
    expect(validatePriority(PRIORITY_MAX)).toBe(PRIORITY_MAX);
    expect(() => validatePriority(PRIORITY_MIN - 1)).toThrow(/priority must be an integer/);
    expect(() => validatePriority(PRIORITY_MAX + 1)).toThrow(/priority must be an integer/);
  });

  it("the advertised message types are the library's", () => {
    expect(MESSAGE_TYPES).toEqual(Object.values(MessageType));
    for (const type of MESSAGE_TYPES) expect(validateType(type)).toBe(type);
  });
});

describe('createMcpServer embedded in a process (concord-agents/mcp)', () => {
  const closers: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  /** Tool calls that reached the server, by tool name. */
  const arrived: string[] = [];

  async function connect(server: ReturnType<typeof createMcpServer>): Promise<Client> {
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const deliver = serverSide.onmessage!;
    serverSide.onmessage = (message, extra) => {
      if ('method' in message && message.method === 'tools/call') arrived.push(String((message.params as { name?: unknown })?.name));
      deliver(message, extra);
    };
    const client = new Client({ name: 'embedded', version: '1.0.0' });
    await client.connect(clientSide);
    closers.push(() => client.close());
    return client;
  }

  it('several sessions of one agent share its leases: one receives, another acks', async () => {
    const bus = new MessageBus();
    closers.push(() => bus.close());
    const leases = new LeasedDeliveries();
    const first = await connect(createMcpServer({ agent: 'worker', bus, leases }));
    const second = await connect(createMcpServer({ agent: 'worker', bus, leases }));
    bus.registerAgent('boss');
    const sent = await bus.send({ sender: 'boss', recipient: 'worker', type: 'task', payload: { n: 1 } });
    const got = await call(first, 'receive_message', { timeoutMs: 1_000 });
    expect(got['message']['id']).toBe(sent.id);
    expect(leases.ids()).toEqual([sent.id]);
    expect(await call(second, 'ack_message', { messageId: sent.id })).toEqual({ acked: sent.id });
    expect(leases.ids()).toEqual([]);
    // Without a state manager the state tools are not offered.
    expect((await first.listTools()).tools.map((t) => t.name)).not.toContain('read_document');
  });

  it('a receive the client cancelled hands the message it then gets straight back to the queue', async () => {
    const bus = new MessageBus();
    const state = new StateManager();
    closers.push(
      () => state.close(),
      () => bus.close(),
    );
    const client = await connect(createMcpServer({ agent: 'worker', bus, state }));
    bus.registerAgent('boss');
    const abort = new AbortController();
    const cancelled = client.callTool({ name: 'receive_message', arguments: { timeoutMs: 2_000 } }, undefined, { signal: abort.signal });
    // Cancel once the call reached the server (its handler then runs, blocked in receive).
    await waitFor(() => arrived.includes('receive_message'), 'receive_message to reach the server');
    abort.abort();
    await expect(cancelled).rejects.toThrow();
    const sent = await bus.send({ sender: 'boss', recipient: 'worker', type: 'task', payload: { n: 2 } });
    // The cancelled call's receive still took the message; it nacked it without delay, so it is back as attempt 2.
    const again = await waitFor(
      async () => (await bus.receive('worker', { timeout: 100 })) ?? undefined,
      'the message back on the queue',
      5_000,
    );
    expect(again).toMatchObject({ id: sent.id, attempt: 2 });
    await again!.ack();
    expect(await callError(client, 'ack_message', { messageId: sent.id })).toMatchObject({ code: 'validation' });
  });
});
