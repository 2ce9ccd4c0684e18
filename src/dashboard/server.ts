import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono as HonoApp, Context } from 'hono';
import { ConcordError, ValidationError } from '../errors.js';
import type { Message } from '../message.js';
import type { MessageBus } from '../bus/bus.js';
import type { DeadLetter, Transport } from '../bus/transport.js';
import type { StateManager } from '../state/manager.js';
import type { StateStore } from '../state/store.js';
import type { ChangeEvent } from '../state/types.js';
import { unifiedDiff, diffStat } from '../state/diff.js';
import { BackendObserver, type ObservedEvent } from '../observability/observer.js';
import { createConcordMetrics, type ConcordMetrics } from '../observability/metrics.js';

/** Header that carries the dashboard token on mutating requests (`Authorization: Bearer <token>` works too). */
export const TOKEN_HEADER = 'x-concord-token';

/** Options of {@link createDashboard}. */
export interface DashboardOptions {
  /** The bus to act through (redrive, purge); its transport is `transport`. */
  bus: MessageBus;
  /** The bus backend to show. A shared one (Redis) shows every process's traffic. */
  transport: Transport;
  /** The state to show (documents, versions, workflows). */
  state?: { manager: StateManager; store: StateStore };
  /** The token mutating requests must carry (default: 24 random bytes, hex). */
  token?: string;
  /** How often queue figures are pushed to open pages (default 1000 ms). */
  refreshMs?: number;
}

/** A dashboard: a Hono app (mount `fetch` in any server) and what it runs. */
export interface Dashboard {
  readonly app: HonoApp;
  /** A Fetch API handler: `(request) => response`. */
  readonly fetch: (request: Request) => Response | Promise<Response>;
  readonly token: string;
  readonly observer: BackendObserver;
  readonly metrics: ConcordMetrics;
  /** Ends the observer and open event streams (the bus, transport and state stay open: they are the caller's). */
  close(): Promise<void>;
}

const ASSETS = join(dirname(fileURLToPath(import.meta.url)), 'assets');
const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/** JSON-ready message (Dates as ISO text). */
function messageJson(m: Message): Record<string, unknown> {
  return { ...m, timestamp: m.timestamp.toISOString(), traceId: m.headers['traceparent']?.split('-')[1] ?? null };
}

function letterJson(l: DeadLetter): Record<string, unknown> {
  return { ...l, message: messageJson(l.message), deadAt: l.deadAt.toISOString() };
}

function changeJson(c: ChangeEvent): Record<string, unknown> {
  return { ...c, timestamp: c.timestamp.toISOString() };
}

function sameToken(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A positive integer from a query or path parameter, or a ValidationError naming it. */
function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(`${name} must be a positive integer, got \`${String(value)}\``, { field: name });
  }
  return n;
}

/**
 * Builds the dashboard over a bus backend and a state store: `/` the page, `/metrics` the
 * Prometheus text, `/api/*` JSON, `/api/events` a Server-Sent Events stream of what the backend
 * observer sees. Redrive and purge need the token (header `x-concord-token`); everything else is
 * read-only and open.
 *
 * @example
 * const dash = await createDashboard({ bus, transport, state: { manager, store } });
 * serve({ fetch: dash.fetch, port: 4000, hostname: '127.0.0.1' });
 */
export async function createDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { Hono } = await import('hono').catch((err: unknown) => {
    throw new ValidationError(
      'the dashboard needs the optional peer dependencies hono and @hono/node-server: npm install hono @hono/node-server',
      { cause: err },
    );
  });
  const { streamSSE } = await import('hono/streaming');
  const { bus, transport } = options;
  const store = options.state?.store;
  const manager = options.state?.manager;
  const token = options.token ?? randomBytes(24).toString('hex');
  const refreshMs = options.refreshMs ?? 1000;

  const observer = new BackendObserver({ transport, ...(store ? { store } : {}) });
  await observer.start();
  const metrics = await createConcordMetrics({ observer });
  const streams = new Set<() => void>();

  const app = new Hono();

  app.onError((err, c) => {
    const status = err instanceof ValidationError ? 400 : err instanceof ConcordError && /not_found/.test(err.code) ? 404 : 500;
    return c.json({ error: err.message, code: err instanceof ConcordError ? err.code : 'internal' }, status);
  });

  const requireToken = (c: Context): Response | undefined => {
    const auth = c.req.header('authorization');
    const given = c.req.header(TOKEN_HEADER) ?? (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined);
    if (sameToken(given, token)) return undefined;
    return c.json(
      {
        error: `this action changes the bus: send the token printed by \`concord dashboard\` in the ${TOKEN_HEADER} header (${given === undefined ? 'none was sent' : 'the one sent does not match'})`,
        code: 'forbidden',
      },
      403,
    );
  };

  const asset = async (c: Context, file: string) => {
    if (!/^[a-z-]+\.(html|js|css)$/.test(file)) return c.json({ error: `no asset \`${file}\`` }, 404);
    const body = await readFile(join(ASSETS, file), 'utf8').catch(() => null);
    if (body === null) return c.json({ error: `no asset \`${file}\`` }, 404);
    return c.body(body, 200, { 'content-type': CONTENT_TYPES[file.split('.').pop()!]!, 'cache-control': 'no-cache' });
  };
  app.get('/', (c) => asset(c, 'index.html'));
  app.get('/assets/:file', (c) => asset(c, c.req.param('file')));

  app.get('/metrics', async (c) => c.body(await metrics.text(), 200, { 'content-type': metrics.contentType }));

  app.get('/api/overview', async (c) => {
    const queues = transport.listQueues ? await transport.listQueues() : Object.keys(bus.metrics().agents);
    const now = Date.now();
    const recent = observer.messages().filter((m) => m.at >= now - 60_000);
    const rows = [];
    for (const name of queues) {
      const depth = await transport.depth(name);
      const inspection = transport.inspectQueue ? await transport.inspectQueue(name, { limit: 0 }) : null;
      rows.push({
        name,
        ...depth,
        byPriority: inspection?.byPriority ?? null,
        oldestAgeMs: inspection?.oldestWaitingAt ? Math.max(0, now - inspection.oldestWaitingAt) : null,
        receivedPerMinute: recent.filter((m) => m.message.recipient === name).length,
        sentPerMinute: recent.filter((m) => m.message.sender === name).length,
      });
    }
    return c.json({
      bus: transport.url,
      state: store?.url ?? null,
      observedMessages: observer.messages().length,
      deadLetters: observer.deadLetters().length,
      queues: rows,
    });
  });

  app.get('/api/messages', (c) => {
    const agent = c.req.query('agent');
    const type = c.req.query('type');
    const correlation = c.req.query('correlationId');
    const list = observer
      .messages()
      .filter(
        ({ message: m }) =>
          (!agent || m.sender === agent || m.recipient === agent) &&
          (!type || m.type === type) &&
          (!correlation || m.correlationId === correlation),
      );
    return c.json(list.slice(-500).map((m) => messageJson(m.message)));
  });

  app.get('/api/conversations/:correlationId', (c) => {
    const id = c.req.param('correlationId');
    const messages = observer
      .messages()
      .map((m) => m.message)
      .filter((m) => m.correlationId === id || m.id === id)
      .sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime() || (a.id < b.id ? -1 : 1));
    const letters = observer.deadLetters().filter((l) => l.message.correlationId === id || l.message.id === id);
    const changes = observer
      .changes()
      .map((ch) => ch.change)
      .filter((ch) => ch.kind === 'document');
    // The document versions a message's handling wrote: by its recipient (the agent, or the
    // orchestrator recording the agent's result under the agent's name), after it was sent and
    // before the next message to that recipient in the conversation.
    const rows = messages.map((m, i) => {
      const next = messages.slice(i + 1).find((n) => n.recipient === m.recipient);
      const from = m.timestamp.getTime();
      const to = next ? next.timestamp.getTime() : Infinity;
      const versions = m.recipient
        ? changes.filter((ch) => ch.actor === m.recipient && ch.timestamp.getTime() >= from && ch.timestamp.getTime() <= to)
        : [];
      return {
        message: messageJson(m),
        deadLetter: letters.find((l) => l.message.id === m.id) ? letterJson(letters.find((l) => l.message.id === m.id)!) : null,
        versions: versions.map(changeJson),
      };
    });
    return c.json({ correlationId: id, messages: rows, deadLetters: letters.map(letterJson) });
  });

  app.get('/api/leases', async (c) => {
    if (!transport.inspectQueue || !transport.listQueues) return c.json({ supported: false, leases: [] });
    const now = Date.now();
    const leases = [];
    for (const queue of await transport.listQueues()) {
      for (const l of (await transport.inspectQueue(queue, { limit: 100 })).leases) {
        leases.push({
          queue,
          token: l.token,
          holder: l.holder ?? null,
          attempt: l.attempt,
          deadline: new Date(l.deadline).toISOString(),
          expiresInMs: l.deadline - now,
          message: messageJson(l.message),
        });
      }
    }
    return c.json({ supported: true, leases });
  });

  app.get('/api/dead-letters', async (c) => {
    await observer.pollDeadLetters();
    return c.json(observer.deadLetters().map(letterJson));
  });
  app.post('/api/dead-letters/purge', async (c) => {
    const refused = requireToken(c);
    if (refused) return refused;
    const purged = await bus.purgeDeadLetters();
    await observer.pollDeadLetters();
    return c.json({ purged });
  });
  app.post('/api/dead-letters/:id/redrive', async (c) => {
    const refused = requireToken(c);
    if (refused) return refused;
    const id = c.req.param('id');
    const message = await bus.redrive(id);
    if (message === null) return c.json({ error: `no dead letter \`${id}\` on ${transport.url}`, code: 'not_found' }, 404);
    observer.redriven(id);
    return c.json({ redriven: messageJson(message) });
  });

  const needState = () => {
    if (!store || !manager) throw new ValidationError('the dashboard was started without a state store (--state URL)', { field: 'state' });
    return { store, manager };
  };
  app.get('/api/documents', async (c) => {
    if (!store) return c.json([]);
    const docs = await store.listDocuments();
    return c.json(
      docs.sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime()).map((d) => ({ ...d, updatedAt: d.updatedAt.toISOString() })),
    );
  });
  app.get('/api/documents/:id', async (c) => {
    const { manager } = needState();
    const id = c.req.param('id');
    const version = c.req.query('version');
    const doc =
      version === undefined ? await manager.getDocumentState(id) : await manager.getDocumentAtVersion(id, positive('version', version));
    if (!doc) return c.json({ error: `no document \`${id}\``, code: 'document_not_found' }, 404);
    // One page of the history (`?limit=` entries, default 100; `?before=V` pages back), never all of it.
    const limit = c.req.query('limit');
    const before = c.req.query('before');
    const history = await manager.getStateHistory(id, {
      ...(limit === undefined ? {} : { limit: positive('limit', limit) }),
      ...(before === undefined ? {} : { before: positive('before', before) }),
    });
    return c.json({ ...doc, history, createdAt: doc.createdAt.toISOString(), updatedAt: doc.updatedAt.toISOString() });
  });
  app.get('/api/documents/:id/diff', async (c) => {
    const { manager } = needState();
    const id = c.req.param('id');
    const from = positive('from', c.req.query('from'));
    const to = positive('to', c.req.query('to'));
    const [a, b] = await Promise.all([manager.getDocumentAtVersion(id, from), manager.getDocumentAtVersion(id, to)]);
    return c.json({
      documentId: id,
      from,
      to,
      ...diffStat(a.content, b.content),
      diff: unifiedDiff(a.content, b.content, { fromLabel: `${id}@${from}`, toLabel: `${id}@${to}` }),
    });
  });
  app.get('/api/workflows', async (c) => {
    if (!store) return c.json([]);
    const workflows = await store.listWorkflows();
    return c.json(
      workflows
        .sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime())
        .map((w) => ({ ...w, createdAt: w.createdAt.toISOString(), updatedAt: w.updatedAt.toISOString() })),
    );
  });

  app.get('/api/events', (c) =>
    streamSSE(c, async (stream) => {
      let open = true;
      const queue: ObservedEvent[] = [];
      let wake: (() => void) | undefined;
      const stop = observer.listen((event) => {
        queue.push(event);
        wake?.();
      });
      const tick = setInterval(() => {
        queue.push({ kind: 'tick', at: Date.now() } as unknown as ObservedEvent);
        wake?.();
      }, refreshMs);
      const end = () => {
        open = false;
        wake?.();
      };
      streams.add(end);
      stream.onAbort(end);
      try {
        await stream.writeSSE({ event: 'hello', data: JSON.stringify({ bus: transport.url, state: store?.url ?? null }) });
        while (open) {
          const event = queue.shift();
          if (event === undefined) {
            await new Promise<void>((r) => (wake = r));
            wake = undefined;
            continue;
          }
          const data =
            event.kind === 'message'
              ? messageJson(event.message)
              : event.kind === 'change'
                ? changeJson(event.change)
                : event.kind === 'dead_letter'
                  ? letterJson(event.letter)
                  : event;
          await stream.writeSSE({ event: event.kind, data: JSON.stringify(data) });
        }
      } finally {
        stop();
        clearInterval(tick);
        streams.delete(end);
      }
    }),
  );

  return {
    app,
    fetch: (request) => app.fetch(request),
    token,
    observer,
    metrics,
    async close() {
      for (const end of streams) end();
      await observer.close();
    },
  };
}

/** A running dashboard server (see {@link startDashboard}). */
export interface DashboardServer extends Dashboard {
  /** `http://host:port/`. */
  readonly url: string;
  readonly port: number;
}

/**
 * Serves {@link createDashboard} with @hono/node-server on `host` (default 127.0.0.1: only this
 * machine) and `port` (0 = any free one). `close()` stops the server and the dashboard.
 */
export async function startDashboard(options: DashboardOptions & { port?: number; host?: string }): Promise<DashboardServer> {
  const { serve } = await import('@hono/node-server').catch((err: unknown) => {
    throw new ValidationError(
      'the dashboard needs the optional peer dependencies hono and @hono/node-server: npm install hono @hono/node-server',
      { cause: err },
    );
  });
  const dash = await createDashboard(options);
  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: dash.fetch, port: options.port ?? 0, hostname: host }, () => resolve(s));
    s.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    ...dash,
    url: `http://${shown}:${port}/`,
    port,
    async close() {
      await dash.close();
      await new Promise<void>((resolve) => {
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => resolve());
      });
    },
  };
}
