/**
 * Writing and editing through a chat model, against a stand-in: a local HTTP server on 127.0.0.1
 * that speaks the OpenAI chat-completions protocol (streaming, server-sent events) and answers
 * with recorded replies. No network, no key, no real model.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDocumentAgents,
  createWritingAgent,
  parseDocument,
  type ResearchResult,
  type VerificationResult,
  type WritingResult,
  type EditingResult,
} from '../../src/agents/index.js';
import { ValidationError } from '../../src/errors.js';
import { requireBuild, runCli, startCli, tempDir, type CliProcess } from '../cli/helpers.js';
import { SERVICES, serviceAvailable, testNamespace } from '../helpers/services.js';
import { cleanupNamespace } from '../redis/helpers.js';
import { SAMPLES, call } from './helpers.js';

const redisUp = await serviceAvailable('redis');

const TOPIC = 'Idempotency keys';
const WORDS = 120;

/**
 * The recorded first draft. `{{...}}` marks the passage a sentence comes from: the stand-in puts in
 * the key the prompt gave that passage, as a model reading the prompt would.
 */
const RECORDED_DRAFT = `# Idempotency keys

## Introduction

With at-least-once delivery, every agent will sooner or later see the same message twice [{{With at-least-once delivery}}].

## Idempotency keys

The simplest tool is a stable message identifier chosen by the producer [{{The simplest tool}}]. When a producer retries a send with the same identifier, the queue recognises it within a deduplication window and returns the original message instead of enqueueing a second copy [{{The simplest tool}}].

Consumers can apply the same idea to their effects [{{Consumers can apply}}]. Storing the record and the effect together matters: if they are written separately, a crash between the two writes breaks the guarantee [{{Consumers can apply}}]. Effects outside the system, such as sending an email or charging a card, need their own idempotency keys on the receiving side [{{Deduplication has limits}}].

## Limits

Deduplication has limits that should be stated plainly [{{Deduplication has limits}}]. A deduplication window is finite, so a duplicate that arrives after the window has closed is processed again [{{Deduplication has limits}}].

## Conclusion

Stable message identifiers and recorded effects make retries safe, within the deduplication window.
`;

/** A recorded draft that cites a passage the prompt never gave (there is no P99). */
const INVENTED = RECORDED_DRAFT.replace('processed again [{{Deduplication has limits}}]', 'processed again [P99]');

interface StandIn {
  url: string;
  requests: Array<{ model: string; stream: boolean; messages: Array<{ role: string; content: string }> }>;
  close(): Promise<void>;
}

/** The key the prompt gave the passage starting with `start`: `[P3] ...\\n<start>...`. */
function keyFor(prompt: string, start: string): string {
  const lines = prompt.split('\n');
  const at = lines.findIndex((l, k) => l.startsWith(start) && /^\[P\d+\] /.test(lines[k - 1] ?? ''));
  const key = /^\[(P\d+)\] /.exec(lines[at - 1] ?? '')?.[1];
  if (at < 0 || key === undefined) throw new Error(`the prompt has no passage starting "${start}"`);
  return key;
}

/** Starts the stand-in: drafts get `draft`, edits get the document back with one sentence reworded. */
async function startStandIn(draft: string): Promise<StandIn> {
  const requests: StandIn['requests'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404).end();
        return;
      }
      const parsed = JSON.parse(body) as StandIn['requests'][number];
      requests.push(parsed);
      const system = parsed.messages[0]?.content ?? '';
      const user = parsed.messages.at(-1)?.content ?? '';
      let reply: string;
      try {
        reply = /copy editor/.test(system)
          ? user.replace(
              'Stable message identifiers and recorded effects make retries safe',
              'In short, stable message identifiers and recorded effects make retries safe',
            )
          : draft.replace(/\{\{([^}]+)\}\}/g, (_, start: string) => keyFor(user, start));
      } catch (err) {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: String(err) } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      // Streamed in small pieces, as a model streams tokens.
      for (let i = 0; i < reply.length; i += 16) {
        const chunk = {
          id: 'chatcmpl-standin',
          object: 'chat.completion.chunk',
          created: 0,
          model: parsed.model,
          choices: [{ index: 0, delta: { content: reply.slice(i, i + 16) }, finish_reason: null }],
        };
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      }
      res.write(
        `data: ${JSON.stringify({ id: 'chatcmpl-standin', object: 'chat.completion.chunk', created: 0, model: parsed.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1`, requests, close: () => new Promise((done) => server.close(() => done())) };
}

async function runAgents(standIn: StandIn) {
  const tokens: string[] = [];
  const agents = createDocumentAgents({
    sourcesDir: SAMPLES,
    model: { model: 'standin-7b', baseURL: standIn.url, apiKey: 'test' },
    onToken: (agent, text) => tokens.push(`${agent}:${text}`),
  });
  const { passages } = (await call(agents.research, { topic: TOPIC })).result as ResearchResult;
  const written = (await call(agents.writing, { topic: TOPIC, requirements: [], words: WORDS, passages })).result as WritingResult;
  const edited = (await call(agents.editing, { content: written.content, words: WORDS, topic: TOPIC })).result as EditingResult;
  const verified = (await call(agents.verification, { content: edited.content, topic: TOPIC, words: WORDS, passages }))
    .result as VerificationResult;
  return { passages, written, edited, verified, tokens };
}

describe('a model behind writing and editing (chat-completions stand-in on 127.0.0.1)', () => {
  let standIn: StandIn;
  let invented: StandIn;
  beforeAll(async () => {
    standIn = await startStandIn(RECORDED_DRAFT);
    invented = await startStandIn(INVENTED);
  });
  afterAll(async () => {
    await standIn.close();
    await invented.close();
  });

  it('stand-in: the model gets the passages with citation keys, its keys become numbered citations with titled references, and the draft verifies', async () => {
    const { passages, written, edited, verified, tokens } = await runAgents(standIn);
    const draftRequest = standIn.requests.find((r) => /only from the passages/.test(r.messages[0]?.content ?? ''));
    expect(draftRequest).toMatchObject({ model: 'standin-7b', stream: true });
    // Every passage is in the prompt under its key.
    for (const [i, p] of passages.entries()) expect(draftRequest?.messages[1]?.content).toContain(`[P${i + 1}] `);
    const doc = parseDocument(written.content);
    expect(doc.references.map((r) => r.title)).toEqual(doc.references.map(() => 'Idempotency and deduplication'));
    expect(written.citations.map((c) => c.n)).toEqual(doc.references.map((_, i) => i + 1));
    expect(written.content).not.toMatch(/\[P\d+\]/);
    // Editing went through the model too, kept every citation, and says what it changed.
    expect(edited.changes[0]).toMatch(/^standin-7b@127\.0\.0\.1:\d+ edited the wording$/);
    expect(edited.content).toContain('In short, stable message identifiers');
    // Verification stays deterministic and checks every cited span: the recorded draft quotes its sources.
    expect(verified.problems.filter((p) => p.kind === 'citation')).toEqual([]);
    expect(verified.score).toBeGreaterThanOrEqual(0.8);
    // Tokens streamed as they came, for both agents.
    expect(tokens.filter((t) => t.startsWith('writing:')).length).toBeGreaterThan(10);
    expect(tokens.filter((t) => t.startsWith('editing:')).length).toBeGreaterThan(10);
  });

  it('stand-in: a model that invents a citation fails the gate', async () => {
    const { written, verified } = await runAgents(invented);
    expect(written.revisions).toContainEqual(expect.stringMatching(/cited keys that name no passage: P99$/));
    expect(verified.score).toBeLessThan(0.8);
    expect(verified.problems).toContainEqual(
      expect.objectContaining({
        kind: 'citation',
        message: expect.stringMatching(/^citation \[\d+\] in 'Limits' has no entry in References$/),
      }),
    );
  });

  it('a bad model configuration is a ValidationError naming the field', () => {
    expect(() => createWritingAgent({ model: { model: '' } })).toThrow(ValidationError);
    expect(() => createWritingAgent({ model: { model: 'x', baseURL: 'ftp://host' } })).toThrow(/model\.baseURL must be an http\(s\) URL/);
  });

  it('stand-in: concord run --model streams the tokens in the progress display and writes the document', async () => {
    requireBuild();
    const tmp = tempDir();
    try {
      const result = await runCli(
        ['run', TOPIC, '--sources', SAMPLES, '--model', 'standin-7b', '--words', String(WORDS), '--state', 'memory://', '--out', 'doc.md'],
        {
          cwd: tmp.dir,
          env: { CONCORD_MODEL_BASE_URL: standIn.url, CONCORD_MODEL_API_KEY: 'test' },
        },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/^writing ← standin-7b@127\.0\.0\.1:\d+: # Idempotency keys$/m);
      expect(result.stderr).toMatch(/^writing ← standin-7b@127\.0\.0\.1:\d+: \d+ tokens streamed$/m);
      expect(result.stderr).toMatch(/^editing ← standin-7b@127\.0\.0\.1:\d+: \d+ tokens streamed$/m);
      expect(result.stdout).toMatch(/threshold 0\.80: met/);
    } finally {
      tmp.cleanup();
    }
  });
});

describe.runIf(redisUp)('a model behind writing and editing agent processes on a Redis bus (stand-in on 127.0.0.1)', () => {
  const ns = testNamespace('model-remote');
  const bus = `${SERVICES.redis.url}?namespace=${ns}`;
  const agents: CliProcess[] = [];
  let standIn: StandIn;
  let tmp: ReturnType<typeof tempDir>;

  beforeAll(async () => {
    requireBuild();
    standIn = await startStandIn(RECORDED_DRAFT);
    tmp = tempDir();
    const model = { env: { CONCORD_MODEL_BASE_URL: standIn.url, CONCORD_MODEL_API_KEY: 'test' } };
    for (const [name, extra] of [
      ['research', ['--sources', SAMPLES]],
      ['writing', ['--model', 'standin-7b']],
      ['editing', ['--model', 'standin-7b']],
      ['verification', ['--sources', SAMPLES]],
    ] as const) {
      agents.push(startCli(['agent', name, '--bus', bus, ...extra], { cwd: tmp.dir, ...(extra[0] === '--model' ? model : {}) }));
    }
    await Promise.all(agents.map((a) => a.waitFor(/agent \S+ serving on redis:\/\//)));
  });
  afterAll(async () => {
    for (const a of agents) a.child.kill('SIGTERM');
    await Promise.all(agents.map((a) => a.exited));
    await cleanupNamespace(ns);
    await standIn?.close();
    tmp?.cleanup();
  });

  it('stand-in: concord run --agents remote shows the text the agent processes stream, as a local run shows its own', async () => {
    const args = ['run', TOPIC, '--sources', SAMPLES, '--words', String(WORDS), '--state', 'memory://'];
    const remote = await runCli([...args, '--bus', bus, '--agents', 'remote', '--out', 'remote.md'], { cwd: tmp.dir });
    expect(remote.code, remote.stderr).toBe(0);
    expect(remote.stdout).toMatch(/threshold 0\.80: met/);
    expect(remote.stderr).toMatch(/^writing ← standin-7b@127\.0\.0\.1:\d+: # Idempotency keys$/m);
    expect(remote.stderr).toMatch(/^editing ← standin-7b@127\.0\.0\.1:\d+: \d+ tokens streamed$/m);

    // Line for line what a run whose agents are in its own process shows: the same text, the same
    // token counts, in the same place among the stage lines.
    const local = await runCli([...args, '--model', 'standin-7b', '--out', 'local.md'], {
      cwd: tmp.dir,
      env: { CONCORD_MODEL_BASE_URL: standIn.url, CONCORD_MODEL_API_KEY: 'test' },
    });
    expect(local.code, local.stderr).toBe(0);
    const progress = (stderr: string) =>
      stderr
        .split('\n')
        .filter((l) => !l.startsWith('agents: remote'))
        .map((l) => l.replace(/(wf|doc)-\S+?-\w{8}\b/g, '$1-ID'))
        // The replies of agents in the run's own process count among its messages too.
        .map((l) => l.replace(/\(\d+ messages sent\)$/, '(N messages sent)'));
    expect(progress(remote.stderr)).toEqual(progress(local.stderr));
    expect(progress(remote.stderr).filter((l) => / tokens streamed$/.test(l))).toHaveLength(2);
  });
});
