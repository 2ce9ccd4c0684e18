/**
 * Agents in two languages on one Redis namespace: the reference Python client (clients/python,
 * through the published concord_v1 functions) and Concord's TypeScript bus (its internal scripts).
 * Real processes, the shared Redis, a namespace of their own.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MessageBus, MessageType, RemoteError, defineAgent, type Message } from '../../src/index.js';
import { createRedisTransport } from '../../src/backends/redis/index.js';
import { serviceAvailable, testNamespace, waitFor } from '../helpers/services.js';
import { cleanupNamespace, redisUrl } from '../redis/helpers.js';
import { CLIENT_DIR, SCENARIOS, pythonAvailable, runPython, startPython, type PythonProcess } from './python.js';

const up = (await serviceAvailable('redis')) && pythonAvailable();

describe.runIf(up)('a Python agent and a TypeScript agent on one bus', () => {
  const ns = testNamespace('interop');
  const url = redisUrl(ns);
  const started: PythonProcess[] = [];
  let bus: MessageBus;

  function python(args: string[]): PythonProcess {
    const p = startPython([SCENARIOS, ...args]);
    started.push(p);
    return p;
  }

  beforeAll(async () => {
    bus = new MessageBus({ transport: createRedisTransport(url), leaseMs: 1000, requestTimeoutMs: 15_000 });
    await bus.ready();
  });
  afterEach(async () => {
    for (const p of started.splice(0)) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
  });
  afterAll(async () => {
    await bus.close();
    await cleanupNamespace(ns);
  });

  it('a TypeScript request is answered by a Python agent', async () => {
    const agent = python(['serve', url, 'py-echo']);
    await agent.waitFor(/serving py-echo/);
    const reply = await bus.request({ sender: 'ts-client', recipient: 'py-echo', payload: { n: 1, text: 'héllo 😀' } });
    expect(reply.type).toBe(MessageType.RESULT);
    expect(reply.sender).toBe('py-echo');
    expect(reply.payload).toEqual({ echo: { n: 1, text: 'héllo 😀' }, by: 'python', attempt: 1 });
    expect(reply.headers['inReplyTo']).toBeDefined();
    expect(reply.correlationId).toBe(reply.headers['inReplyTo']);
  });

  it('a Python request is answered by a TypeScript agent', async () => {
    bus.registerAgent('ts-echo', defineAgent({ name: 'ts-echo', handleMessage: (m: Message) => ({ echo: m.payload, by: 'typescript' }) }));
    await bus.ready();
    const { stdout } = await runPython([SCENARIOS, 'request', url, 'ts-echo', JSON.stringify({ q: 'why' })]);
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT ') || l.startsWith('ERROR '));
    expect(line, stdout).toMatch(/^RESULT /);
    const reply = JSON.parse(line!.slice('RESULT '.length)) as Record<string, unknown>;
    expect(reply['type']).toBe('result');
    expect(reply['sender']).toBe('ts-echo');
    expect(reply['payload']).toEqual({ echo: { q: 'why' }, by: 'typescript' });
  });

  it('a Python agent killed mid-task: its message reaches a TypeScript agent as attempt 2', async () => {
    const agent = python(['serve', url, 'worker', '--lease', '1000']);
    await agent.waitFor(/serving worker/);
    const sent = await bus.send({ sender: 'ts-client', recipient: 'worker', type: MessageType.TASK, payload: { hang: true, job: 7 } });
    const [, id, attempt] = (await agent.waitFor(/handling (\S+) attempt (\d+)/)) as unknown as [string, string, string];
    expect(id).toBe(sent.id);
    expect(attempt).toBe('1');
    agent.child.kill('SIGKILL');
    await agent.exited;
    const got: Message[] = [];
    bus.registerAgent('worker', defineAgent({ name: 'worker', handleMessage: (m: Message) => void got.push(m) }));
    await waitFor(() => got.length > 0, 'the task redelivered to the TypeScript worker', 10_000);
    expect(got[0]!.id).toBe(sent.id);
    expect(got[0]!.attempt).toBe(2);
    expect(got[0]!.payload).toEqual({ hang: true, job: 7 });
    await bus.unregisterAgent('worker');
  });

  it('a Python handler error arrives in TypeScript as RemoteError with the ERROR payload', async () => {
    const agent = python(['serve', url, 'py-fail', '--max-attempts', '1']);
    await agent.waitFor(/serving py-fail/);
    const err = await bus.request({ sender: 'ts-client', recipient: 'py-fail', payload: { fail: true } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    const remote = err as RemoteError;
    expect(remote.sender).toBe('py-fail');
    expect(remote.payload).toEqual({ message: 'python says no', attempts: 1, name: 'ValueError' });
    expect(remote.message).toContain('python says no');
    const letters = await bus.getDeadLetters();
    const letter = letters.find((l) => l.message.id === remote.requestId);
    expect(letter?.reason).toBe('max_attempts');
    expect(letter?.error).toBe('python says no');
  });

  it("the Python README's ten-line example runs and prints what it shows", async () => {
    const example = /```python\n([\s\S]*?)```/.exec(readFileSync(CLIENT_DIR + 'README.md', 'utf8'))![1]!;
    expect(example.trim().split('\n')).toHaveLength(10);
    const file = `${CLIENT_DIR}tests/.readme-example-${ns}.py`;
    writeFileSync(file, example.replace('namespace=docs', `namespace=${ns}`));
    try {
      const { stdout } = await runPython([file]);
      expect(stdout.trim()).toBe(/print\(reply\["payload"\]\)\s+# (.*)/.exec(example)![1]);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('STATUS publications are seen both ways', async () => {
    // Python -> TypeScript.
    const seen: Message[] = [];
    const sub = bus.subscribe('status', (m: Message) => void seen.push(m));
    await sub.ready;
    await runPython([SCENARIOS, 'publish', url, JSON.stringify({ phase: 'python is up' })]);
    await waitFor(() => seen.find((m) => m.payload['phase'] === 'python is up'), 'the Python STATUS in TypeScript');
    expect(seen[0]!.sender).toBe('py-publisher');
    expect(seen[0]!.recipient).toBe('');
    await sub.unsubscribe();
    // TypeScript -> Python.
    const listener = python(['subscribe', url, 'status', '1']);
    await listener.waitFor(/subscribed/);
    await bus.publish({ sender: 'ts-client', type: MessageType.STATUS, payload: { phase: 'typescript is up' } });
    const [, json] = (await listener.waitFor(/SEEN (.*)\n/)) as unknown as [string, string];
    const message = JSON.parse(json) as Record<string, unknown>;
    expect(message['type']).toBe('status');
    expect(message['sender']).toBe('ts-client');
    expect(message['payload']).toEqual({ phase: 'typescript is up' });
    expect(await listener.exited).toBe(0);
  });

  it('a Python subscriber of every topic sees what a TypeScript producer sends (it shows itself on all-topics)', async () => {
    bus.registerAgent('ts-sink', defineAgent({ name: 'ts-sink', handleMessage: () => undefined }));
    await bus.ready();
    const listener = python(['subscribe', url, '*', '1']);
    await listener.waitFor(/subscribed/);
    await bus.send({ sender: 'ts-client', recipient: 'ts-sink', type: MessageType.TASK, payload: { seen: 'by python' } });
    const [, json] = (await listener.waitFor(/SEEN (.*)\n/)) as unknown as [string, string];
    const message = JSON.parse(json) as Record<string, unknown>;
    expect(message['recipient']).toBe('ts-sink');
    expect(message['payload']).toEqual({ seen: 'by python' });
    expect(await listener.exited).toBe(0);
  });
});
