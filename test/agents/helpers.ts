import { vi } from 'vitest';
import type { Logger } from 'pino';
import type { AgentContext } from '../../src/bus/agent.js';
import type { Message, MessageType } from '../../src/message.js';
import { defaultSourcesDir } from '../../src/agents/index.js';

/** The sample notes shipped in the repo. */
export const SAMPLES = defaultSourcesDir();

/** The demo topic. */
export const TOPIC = 'Reliable coordination of multi-agent systems';
export const REQUIREMENTS = ['message delivery guarantees', 'shared document state', 'workflow recovery'];

/** A message as the bus would deliver it. */
export function message(payload: unknown, type: MessageType = 'task'): Message {
  return {
    id: '01J0000000000000000000TEST',
    type,
    sender: 'orchestrator',
    recipient: 'agent',
    payload: payload as Record<string, unknown>,
    timestamp: new Date(0),
    priority: 5,
    headers: {},
    attempt: 1,
  };
}

/** A minimal context: replies and log lines are recorded, nothing else is wired. */
export function fakeContext(msg: Message): AgentContext & { replies: unknown[]; debug: ReturnType<typeof vi.fn> } {
  const replies: unknown[] = [];
  const debug = vi.fn();
  return {
    agent: 'agent',
    message: msg,
    send: vi.fn(async () => {
      throw new Error('send is not wired in this test');
    }) as unknown as AgentContext['send'],
    reply: (async (payload: unknown) => {
      replies.push(payload);
      return { ...msg, type: 'result', payload };
    }) as unknown as AgentContext['reply'],
    extendLease: async () => true,
    state: undefined,
    signal: new AbortController().signal,
    log: { debug } as unknown as Logger,
    replies,
    debug,
  };
}

/** Calls an agent the way the bus would, with a fake context. */
export async function call<R>(
  agent: { handleMessage(m: Message, c: AgentContext): Promise<R> | R },
  payload: unknown,
  type: MessageType = 'task',
) {
  const msg = message(payload, type);
  const ctx = fakeContext(msg);
  const result = await agent.handleMessage(msg, ctx);
  return { result, ctx };
}
