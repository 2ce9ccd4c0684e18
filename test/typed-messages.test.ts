import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RemoteError, ValidationError } from '../src/errors.js';
import { MessageBus } from '../src/bus/bus.js';
import { defineAgent } from '../src/bus/agent.js';
import type { SchemaLike } from '../src/bus/schema.js';
import { waitFor } from './helpers/services.js';

const buses: MessageBus[] = [];
function newBus(): MessageBus {
  const bus = new MessageBus({ maxAttempts: 3, backoff: { initialMs: 1, factor: 1, maxMs: 1, jitter: 0 } });
  buses.push(bus);
  return bus;
}
afterEach(async () => {
  await Promise.allSettled(buses.splice(0).map((b) => b.close({ drainTimeoutMs: 100 })));
});

const Input = z.object({ text: z.string(), times: z.number().int().default(1) });
const Output = z.object({ words: z.number() });

const counter = defineAgent({
  name: 'counter',
  input: Input,
  output: Output,
  handleMessage: (m) => ({ words: m.payload.text.split(' ').length * m.payload.times }),
});

/** A Standard Schema written by hand, as valibot or arktype would hand one over: no zod involved. */
const evenNumber: SchemaLike<{ n: number }, { n: number }> = {
  '~standard': {
    version: 1,
    vendor: 'hand',
    validate: (value) => {
      const n = (value as { n?: unknown } | null)?.n;
      return typeof n === 'number' && n % 2 === 0 ? { value: { n } } : { issues: [{ message: 'must be even', path: ['n'] }] };
    },
  },
};

describe('typed messages', () => {
  it('validates and types a request and its reply with zod schemas', async () => {
    const bus = newBus();
    bus.registerAgent(counter.name, counter);
    const reply = await bus.request({
      sender: 'me',
      recipient: 'counter',
      payload: { text: 'a b c' },
      schema: { input: Input, output: Output },
    });
    expect(reply.payload).toEqual({ words: 3 });
    const words: number = reply.payload.words; // typed: no cast
    expect(words).toBe(3);
  });

  it('refuses a request whose payload fails its schema before anything is sent, naming the field', async () => {
    const bus = newBus();
    bus.registerAgent('counter'); // pull: would hold whatever was sent
    const bad = bus.request({ sender: 'me', recipient: 'counter', payload: { text: 7 } as never, schema: { input: Input } });
    await expect(bad).rejects.toBeInstanceOf(ValidationError);
    await expect(bad).rejects.toMatchObject({ field: 'payload.text' });
    expect(await bus.receive('counter')).toBeNull();
    expect(bus.metrics().messagesSent).toBe(0);
  });

  it('answers at once with an ERROR and dead-letters, without retrying, a payload the agent’s input schema refuses', async () => {
    const bus = newBus();
    let calls = 0;
    const strict = defineAgent({ name: 'strict', input: Input, handleMessage: (m) => ({ got: m.payload.text, n: ++calls }) });
    bus.registerAgent(strict.name, strict);
    const err = await bus.request({ sender: 'me', recipient: 'strict', payload: { text: ['not', 'text'] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).payload).toMatchObject({ code: 'validation', attempts: 1 });
    expect(String((err as RemoteError).payload['message'])).toContain('payload.text');
    expect(calls).toBe(0);
    const [letter] = await bus.getDeadLetters();
    expect(letter).toMatchObject({ reason: 'max_attempts', attempts: 1 });
    expect(letter?.error).toContain('payload.text');
    expect(bus.metrics().retries).toBe(0);
  });

  it('hands the handler the payload as its schema parsed it (defaults filled in)', async () => {
    const bus = newBus();
    bus.registerAgent(counter.name, counter);
    const reply = await bus.request({ sender: 'me', recipient: 'counter', payload: { text: 'a b', times: 2 } });
    expect(reply.payload).toEqual({ words: 4 });
  });

  it('treats a result its output schema refuses as a handler failure: retried, then an ERROR', async () => {
    const bus = newBus();
    let calls = 0;
    const sloppy = defineAgent({
      name: 'sloppy',
      output: Output,
      handleMessage: () => {
        calls++;
        return { words: 'many' } as never;
      },
    });
    bus.registerAgent(sloppy.name, sloppy);
    const err = await bus.request({ sender: 'me', recipient: 'sloppy', payload: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(String((err as RemoteError).payload['message'])).toContain('result.words');
    expect(calls).toBe(3);
  });

  it('rejects a reply that fails the request’s output schema, naming the field', async () => {
    const bus = newBus();
    bus.registerAgent('liar', defineAgent({ name: 'liar', handleMessage: () => ({ words: 'three' }) }));
    const bad = bus.request({ sender: 'me', recipient: 'liar', payload: {}, schema: { output: Output } });
    await expect(bad).rejects.toMatchObject({ name: 'ValidationError', field: 'reply payload.words' });
  });

  it('accepts any Standard Schema (the `~standard` interface), not only zod', async () => {
    const bus = newBus();
    const halver = defineAgent({ name: 'halver', input: evenNumber, handleMessage: (m) => ({ half: m.payload.n / 2 }) });
    bus.registerAgent(halver.name, halver);
    const ok = await bus.request({ sender: 'me', recipient: 'halver', payload: { n: 8 }, schema: { input: evenNumber } });
    expect(ok.payload).toEqual({ half: 4 });
    await expect(
      bus.request({ sender: 'me', recipient: 'halver', payload: { n: 3 }, schema: { input: evenNumber } }),
    ).rejects.toMatchObject({
      field: 'payload.n',
      message: 'payload.n: must be even',
    });
  });

  it('refuses a schema option that is no schema', async () => {
    const bus = newBus();
    await expect(
      bus.request({ sender: 'me', recipient: 'x', payload: {}, schema: { input: {} as unknown as SchemaLike } }),
    ).rejects.toMatchObject({ field: 'schema' });
    expect(() => defineAgent({ name: 'x', input: 5 as never, handleMessage: () => undefined })).toThrow(ValidationError);
  });

  it('leaves agents without schemas as they were', async () => {
    const bus = newBus();
    const plain = defineAgent({ name: 'plain', handleMessage: (m) => m.payload });
    bus.registerAgent(plain.name, plain);
    await waitFor(async () => (await bus.request({ sender: 'me', recipient: 'plain', payload: { a: 1 } })).payload['a'] === 1, 'the echo');
  });
});
