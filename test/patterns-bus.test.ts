import { afterEach, describe, expect, it } from 'vitest';
import { defineAgent } from '../src/bus/agent.js';
import { MessageBus } from '../src/bus/index.js';
import { RemoteError } from '../src/errors.js';
import { agentStep, forkJoin, sequential } from '../src/patterns.js';

describe('agentStep over a real MessageBus', () => {
  let bus: MessageBus;
  afterEach(async () => {
    await bus.close();
  });

  it('chains agents with sequential and fans out with forkJoin', async () => {
    bus = new MessageBus();
    bus.registerAgent('upper', defineAgent({ name: 'upper', handleMessage: (m) => ({ text: String(m.payload['text']).toUpperCase() }) }));
    bus.registerAgent('exclaim', defineAgent({ name: 'exclaim', handleMessage: (m) => ({ text: `${String(m.payload['text'])}!` }) }));
    const pipeline = [
      agentStep(bus, { sender: 'lead', recipient: 'upper' }),
      agentStep(bus, { sender: 'lead', recipient: 'exclaim', timeout: 5000 }),
    ];
    expect(await sequential(pipeline, { text: 'hi' })).toEqual({ text: 'HI!' });
    const upper = agentStep<{ text: string }, { text: string }>(bus, { sender: 'lead', recipient: 'upper' });
    const joined = await forkJoin(['a', 'b', 'c'], (text, { signal }) => upper({ text }, { signal }), {
      concurrency: 2,
      merge: (parts) => parts.map((p) => p.text).join(''),
    });
    expect(joined).toBe('ABC');
  });

  it('an agent that fails rejects the step with RemoteError', async () => {
    bus = new MessageBus({ maxAttempts: 1 });
    bus.registerAgent(
      'broken',
      defineAgent({
        name: 'broken',
        handleMessage: () => {
          throw new Error('no sources');
        },
      }),
    );
    await expect(sequential([agentStep(bus, { sender: 'lead', recipient: 'broken', timeout: 5000 })], {})).rejects.toBeInstanceOf(
      RemoteError,
    );
  });
});
