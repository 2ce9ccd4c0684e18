import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { expect } from 'vitest';
import { MAIN } from '../cli/helpers.js';

/** The environment an MCP server child gets: no inherited CONCORD_* settings. */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('CONCORD_')) env[k] = v;
  return env;
}

/** An MCP client connected over stdio to `concord mcp --agent NAME ...` in its own process. */
export interface AgentClient {
  client: Client;
  transport: StdioClientTransport;
  /** The server's stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

export async function connectStdio(
  agent: string,
  options: { bus: string; state: string; cwd: string; extra?: string[] },
): Promise<AgentClient> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MAIN, 'mcp', '--agent', agent, '--bus', options.bus, '--state', options.state, ...(options.extra ?? [])],
    cwd: options.cwd,
    env: childEnv(),
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const client = new Client({ name: `test-${agent}`, version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (err) {
    throw new Error(`cannot connect to concord mcp --agent ${agent}: ${(err as Error).message}\nstderr: ${stderr}`, { cause: err });
  }
  return { client, transport, stderr: () => stderr, close: () => client.close() };
}

type Structured = Record<string, any>;

/** Calls a tool that must succeed; resolves with its structured result. */
export async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<Structured> {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
  const structured = result.structuredContent as Structured;
  // The text content carries the same data for clients that only read text.
  const text = (result.content as Array<{ type: string; text: string }>)[0]?.text ?? '';
  expect(JSON.parse(text)).toEqual(structured);
  return structured;
}

/** Calls a tool that must fail; resolves with the `error` object of its tool error. */
export async function callError(client: Client, name: string, args: Record<string, unknown> = {}): Promise<Structured> {
  const result = await client.callTool({ name, arguments: args });
  expect(result.isError, `${name} should fail, got ${JSON.stringify(result.structuredContent)}`).toBe(true);
  const structured = result.structuredContent as Structured;
  const text = (result.content as Array<{ type: string; text: string }>)[0]?.text ?? '';
  expect(JSON.parse(text)).toEqual(structured);
  return structured['error'] as Structured;
}
