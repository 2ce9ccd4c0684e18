import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, testNamespace } from '../helpers/services.js';
import { cleanupNamespace } from '../redis/helpers.js';
import { requireBuild, startCli, tempDir, type CliProcess } from '../cli/helpers.js';
import { call, callError, connectStdio, type AgentClient } from './helpers.js';

const redisUp = await serviceAvailable('redis');

/** Status of a POST to `url` sent with Host `host`. */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end('{}');
  });
}

describe.runIf(redisUp)('concord mcp --http: Streamable HTTP on 127.0.0.1', () => {
  const tmp = tempDir('concord-mcp-http-');
  const ns = testNamespace('mcp-http');
  const bus = `${SERVICES.redis.url}?namespace=${ns}`;
  const state = `sqlite:${join(tmp.dir, 'state.db')}`;
  let server: CliProcess;
  let url: string;
  let carol: Client;
  let alice: AgentClient;

  beforeAll(async () => {
    requireBuild();
    server = startCli(['mcp', '--agent', 'carol', '--bus', bus, '--state', state, '--http', '0'], { cwd: tmp.dir });
    url = (await server.waitFor(/serving MCP on (http:\/\/127\.0\.0\.1:\d+\/mcp)/))[1]!;
    carol = new Client({ name: 'test-carol', version: '1.0.0' });
    await carol.connect(new StreamableHTTPClientTransport(new URL(url)));
    alice = await connectStdio('alice', { bus, state, cwd: tmp.dir });
  });
  afterAll(async () => {
    await carol?.close().catch(() => {});
    await alice?.close();
    if (server && server.child.exitCode === null) server.child.kill('SIGTERM');
    await server?.exited;
    await cleanupNamespace(ns);
    tmp.cleanup();
  });

  it("an HTTP client acts as its agent: receives a stdio client's request and replies", async () => {
    const asked = call(alice.client, 'request', { recipient: 'carol', payload: { review: 'chapter 1' }, timeoutMs: 20_000 });
    const got = await call(carol, 'receive_message', { timeoutMs: 20_000 });
    expect(got['message']).toMatchObject({ sender: 'alice', recipient: 'carol', payload: { review: 'chapter 1' } });
    await call(carol, 'reply', { messageId: got['message']['id'], payload: { verdict: 'fine' } });
    expect((await asked)['reply']).toMatchObject({ sender: 'carol', payload: { verdict: 'fine' } });
    expect(await callError(carol, 'nack_message', { messageId: got['message']['id'] })).toMatchObject({
      code: 'validation',
      field: 'messageId',
    });
  });

  it('refuses a request whose Host is not its own (DNS rebinding)', async () => {
    expect(await statusWithHost(url, 'evil.example:80')).toBe(403);
  });

  it('stops cleanly on SIGTERM', async () => {
    await carol.close();
    server.child.kill('SIGTERM');
    const result = await server.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('concord mcp: stopping (SIGTERM)');
  });
});
