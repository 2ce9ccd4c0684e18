/**
 * Model text over the bus: what an agent's model streams is published in batches on the topic of
 * the task's correlation id, best-effort, and before the agent's own reply.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MessageBus } from '../../src/bus/bus.js';
import { MemoryTransport } from '../../src/backends/memory/transport.js';
import { defineAgent } from '../../src/bus/agent.js';
import type { PublishInput } from '../../src/bus/types.js';
import { MessageType, type Message } from '../../src/message.js';
import { ValidationError } from '../../src/errors.js';
import {
  createDocumentAgents,
  ModelTextPublisher,
  modelTextTopic,
  parseModelTextChunk,
  type ChatModel,
  type ModelTextChunk,
  type ResearchResult,
} from '../../src/agents/index.js';
import { waitFor } from '../helpers/services.js';
import { SAMPLES, call, fakeContext, message } from './helpers.js';

/** A stand-in for the bus that records what is published (and can refuse it). */
function recorder(fail?: Error) {
  const published: PublishInput<ModelTextChunk>[] = [];
  return {
    published,
    chunks: () => published.map((p) => p.payload),
    async publish(input: PublishInput<ModelTextChunk>): Promise<void> {
      if (fail) throw fail;
      published.push(input);
    },
  };
}

const task = (id: string, correlationId?: string): Message => ({
  ...message({}),
  id,
  ...(correlationId !== undefined ? { correlationId } : {}),
});

const buses: MessageBus[] = [];
afterEach(async () => {
  await Promise.allSettled(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 200 })));
});

describe('ModelTextPublisher', () => {
  it('batches the pieces: a publication per maxChars, the rest at the end marked done, nothing lost or reordered', async () => {
    const bus = recorder();
    const text = new ModelTextPublisher(bus, { model: 'm@h', flushMs: 60_000, maxChars: 64 });
    const t = task('01TASK', 'wf-1');
    const pieces = Array.from({ length: 100 }, (_, i) => `${i % 10}ab`);
    for (const p of pieces) text.write('writing', t, p);
    await text.end(t);

    const chunks = bus.chunks();
    // 300 characters in 3-character pieces, published at 66: four full batches and the rest.
    expect(chunks).toHaveLength(5);
    expect(chunks.map((c) => c.text).join('')).toBe(pieces.join(''));
    expect(chunks.map((c) => c.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(chunks.map((c) => c.done)).toEqual([false, false, false, false, true]);
    expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBe(100);
    expect(chunks[0]).toMatchObject({ agent: 'writing', model: 'm@h', requestId: '01TASK' });
    expect(bus.published[0]).toMatchObject({ type: 'status', sender: 'writing', topic: 'model-text.wf-1', correlationId: 'wf-1' });
  });

  it('publishes what waited flushMs without waiting for the end', async () => {
    const bus = recorder();
    const text = new ModelTextPublisher(bus, { flushMs: 20 });
    const t = task('01TASK', 'wf-1');
    text.write('editing', t, 'Leases ');
    text.write('editing', t, 'expire');
    await waitFor(() => bus.published.length === 1, 'the timed flush');
    expect(bus.chunks()[0]).toMatchObject({ text: 'Leases expire', tokens: 2, seq: 0, done: false });
    await text.end(t);
    expect(bus.chunks()[1]).toMatchObject({ text: '', tokens: 0, seq: 1, done: true });
  });

  it('publishes nothing for a task no text was written for, and uses the task id when it has no correlation id', async () => {
    const bus = recorder();
    const text = new ModelTextPublisher(bus);
    await text.end(task('01QUIET', 'wf-1'));
    expect(bus.published).toEqual([]);
    const t = task('01LONE');
    text.write('writing', t, 'x');
    await text.end(t);
    expect(bus.published[0]?.topic).toBe(modelTextTopic('01LONE'));
  });

  it('a failed publish never fails the task: the handler answers, onError hears it once', async () => {
    const bus = recorder(new Error('redis is gone'));
    const errors: string[] = [];
    const text = new ModelTextPublisher(bus, { maxChars: 1, onError: (err) => errors.push((err as Error).message) });
    const agent = text.around(
      defineAgent({
        name: 'writing',
        handleMessage(m) {
          for (const p of ['a', 'b', 'c']) text.write('writing', m, p);
          return { content: 'done' };
        },
      }),
    );
    const t = task('01FAIL', 'wf-1');
    await expect(agent.handleMessage(t, fakeContext(t))).resolves.toEqual({ content: 'done' });
    expect(errors).toEqual(['redis is gone']);
  });

  it('around: the stream ends before a handler that replies itself sends its reply, and after one that returns', async () => {
    const order: string[] = [];
    const bus = {
      async publish(input: PublishInput<ModelTextChunk>): Promise<void> {
        order.push(`publish done=${String(input.payload.done)}`);
      },
    };
    const text = new ModelTextPublisher(bus, { flushMs: 60_000 });
    const replying = text.around(
      defineAgent({
        name: 'writing',
        async handleMessage(m, ctx) {
          text.write('writing', m, 'revised');
          await ctx.reply({ content: 'revised' });
          order.push('handler returns');
          return undefined;
        },
      }),
    );
    const t = task('01FEED', 'wf-1');
    const ctx = fakeContext(t);
    const reply = ctx.reply;
    ctx.reply = (async (payload: unknown) => {
      order.push('reply');
      return reply(payload);
    }) as typeof ctx.reply;
    await replying.handleMessage(t, ctx);
    expect(order).toEqual(['publish done=true', 'reply', 'handler returns']);
  });

  it('on a bus: a writing agent with a model streams to the subscribers of the workflow topic, in order', async () => {
    const bus = new MessageBus({ transport: new MemoryTransport() });
    buses.push(bus);
    const { passages } = (await call(createDocumentAgents({ sourcesDir: SAMPLES }).research, { topic: 'Idempotency keys' }))
      .result as ResearchResult;
    const pieces = ['# Idempotency keys\n\n', '## Introduction\n\n', 'Producers retry [P1].\n'];
    const model: ChatModel = {
      label: 'fake@test',
      async complete(_messages, options) {
        for (const p of pieces) options?.onToken?.(p);
        return pieces.join('');
      },
    };
    const text = new ModelTextPublisher(bus, { model: model.label });
    const writing = createDocumentAgents({ sourcesDir: SAMPLES, model, onToken: (agent, piece, t) => text.write(agent, t, piece) }).writing;
    bus.registerAgent('writing', text.around(writing));

    const seen: Message[] = [];
    const sub = bus.subscribe(modelTextTopic('wf-stream'), (m) => void seen.push(m));
    await sub.ready;
    await bus.request({ sender: 'orchestrator', recipient: 'writing', correlationId: 'wf-stream', payload: { topic: 'x', passages } });
    await waitFor(() => seen.some((m) => parseModelTextChunk(m.payload).done), 'the last chunk');
    await sub.unsubscribe();

    const chunks = seen.map((m) => parseModelTextChunk(m.payload));
    expect(chunks.map((c) => c.text).join('')).toBe(pieces.join(''));
    expect(chunks.reduce((n, c) => n + c.tokens, 0)).toBe(3);
    expect(seen[0]).toMatchObject({ type: MessageType.STATUS, sender: 'writing', recipient: '', correlationId: 'wf-stream' });
    expect(seen[0]?.headers['topic']).toBe('model-text.wf-stream');
    expect(chunks[0]).toMatchObject({ agent: 'writing', model: 'fake@test' });
  });
});

describe('parseModelTextChunk', () => {
  it('reads a chunk, defaults tokens and done, and strips control characters but keeps newlines and tabs', () => {
    expect(parseModelTextChunk({ agent: 'writing', requestId: 'r', seq: 0, text: 'a\u001b[2Jb\n\tc', model: 'm\u0007' })).toEqual({
      agent: 'writing',
      model: 'm',
      requestId: 'r',
      seq: 0,
      text: 'a[2Jb\n\tc',
      tokens: 1,
      done: false,
    });
  });

  it('refuses a chunk that is not one, naming the field', () => {
    const ok = { agent: 'writing', requestId: 'r', seq: 0, text: 'x' };
    expect(() => parseModelTextChunk(null)).toThrow(ValidationError);
    expect(() => parseModelTextChunk({ ...ok, agent: 'no spaces' })).toThrow(/model text: agent must be an agent name/);
    expect(() => parseModelTextChunk({ ...ok, text: 3 })).toThrow(/text must be a string, got `3`/);
    expect(() => parseModelTextChunk({ ...ok, seq: -1 })).toThrow(/seq must be an integer >= 0/);
    expect(() => parseModelTextChunk({ ...ok, tokens: 1.5 })).toThrow(/tokens must be an integer >= 0 when present/);
    expect(() => parseModelTextChunk({ ...ok, done: 'yes' })).toThrow(/done must be a boolean when present/);
  });
});
