import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

/** Largest JSON-RPC request body accepted: a 1 MiB payload plus room for the envelope. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface McpHttpOptions {
  /** A new MCP server for each client session (they may share one agent's leases). */
  createServer: () => McpServer;
  /** TCP port; 0 picks a free one (see `url`). */
  port: number;
  /** Interface to bind (default 127.0.0.1: only this machine can connect). */
  host?: string;
  /** Path of the MCP endpoint (default `/mcp`). */
  path?: string;
}

/** A running Streamable HTTP endpoint. */
export interface McpHttpServer {
  /** e.g. `http://127.0.0.1:3001/mcp`. */
  readonly url: string;
  /** Closes every session and the listener. */
  close(): Promise<void>;
}

function reply(res: ServerResponse, status: number, message: string): void {
  res
    .writeHead(status, { 'content-type': 'application/json' })
    .end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`request body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(size === 0 ? undefined : JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(new Error(`request body is not JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

/**
 * Serves MCP over Streamable HTTP (stateful sessions: one MCP server per client, keyed by the
 * `mcp-session-id` header). Requests whose Host is not this listener's own address are refused,
 * so a web page cannot reach a loopback server through DNS rebinding.
 */
export async function serveMcpHttp(options: McpHttpOptions): Promise<McpHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  let allowedHosts: Set<string> = new Set();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!allowedHosts.has(req.headers.host ?? '')) return reply(res, 403, `host \`${req.headers.host ?? ''}\` is not allowed`);
    if ((req.url ?? '').split('?')[0] !== path) return reply(res, 404, `not found: the MCP endpoint is ${path}`);
    const sessionId = req.headers['mcp-session-id'];
    const known = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;
    if (req.method !== 'POST') {
      // GET opens the server-to-client stream, DELETE ends a session: both need a known session.
      if (!known) return reply(res, 400, 'missing or unknown mcp-session-id');
      return known.handleRequest(req, res);
    }
    let body: unknown;
    try {
      body = await readJson(req);
    } catch (err) {
      return reply(res, 400, (err as Error).message);
    }
    if (known) return known.handleRequest(req, res, body);
    if (sessionId !== undefined) return reply(res, 404, `unknown mcp-session-id \`${String(sessionId)}\``);
    if (!isInitializeRequest(body)) return reply(res, 400, 'the first request of a session must be initialize');
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    const server = options.createServer();
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const http: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) reply(res, 500, err instanceof Error ? err.message : String(err));
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const { port } = http.address() as AddressInfo;
  allowedHosts = new Set([`${host}:${port}`, `localhost:${port}`]);
  return {
    url: `http://${host}:${port}${path}`,
    async close() {
      await Promise.all([...sessions.values()].map((t) => t.close().catch(() => {})));
      sessions.clear();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
