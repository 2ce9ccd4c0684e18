import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import type { Message } from '../src/message.js';
import { MessageBus } from '../src/bus/bus.js';
import { defineAgent } from '../src/bus/agent.js';

const Input = z.object({ text: z.string() });
const Output = z.object({ words: z.number() });
const bus = new MessageBus();

describe('typed messages (types)', () => {
  it('types the handler’s payload from the input schema and its return from the output schema', () => {
    defineAgent({
      name: 'counter',
      input: Input,
      output: Output,
      handleMessage: (m) => {
        expectTypeOf(m.payload).toEqualTypeOf<{ text: string }>();
        return { words: m.payload.text.length };
      },
    });
    // @ts-expect-error the output schema wants `words: number`
    defineAgent({ name: 'wrong', output: Output, handleMessage: () => ({ words: 'many' }) });
  });

  it('types a request’s payload and its reply from the schemas, inferred or given', () => {
    const inferred = bus.request({ sender: 'me', recipient: 'counter', payload: { text: 'a' }, schema: { input: Input, output: Output } });
    expectTypeOf(inferred).toEqualTypeOf<Promise<Message<{ words: number }>>>();
    const given = bus.request<typeof Input, typeof Output>({ sender: 'me', recipient: 'counter', payload: { text: 'a' } });
    expectTypeOf(given).toEqualTypeOf<Promise<Message<{ words: number }>>>();
    // @ts-expect-error the input schema wants `text: string`
    bus.request({ sender: 'me', recipient: 'counter', payload: { text: 1 }, schema: { input: Input } });
  });

  it('keeps untyped requests as they were', () => {
    expectTypeOf(bus.request({ sender: 'me', recipient: 'x', payload: { a: 1 } })).toEqualTypeOf<
      Promise<Message<Record<string, unknown>>>
    >();
  });
});
