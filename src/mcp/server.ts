import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ZodRawShape } from 'zod';
import { unifiedDiff, diffStat } from '../state/diff.js';
import {
  ConcordError,
  DocumentNotFoundError,
  MessageType,
  ValidationError,
  WorkflowNotFoundError,
  type Delivery,
  type MessageBus,
  type StateManager,
} from '../index.js';
import { validateAgentName } from '../bus/agent.js';
import { changeView, documentView, messageView, ok, toolError, workflowView } from './results.js';
import * as s from './schemas.js';

/** How long `receive_message` blocks when the call gives no `timeoutMs`: under the 60 s MCP clients wait by default. */
export const DEFAULT_RECEIVE_WAIT_MS = 30_000;

/** `ack`, `nack`, `reply` or `extend_lease` found the lease already gone: the message went back to the queue. */
export class LeaseLostError extends ConcordError {
  readonly messageId: string;
  constructor(messageId: string, what: string) {
    super(
      'lease_lost',
      `could not ${what} message ${messageId}: its lease ran out first and it went back to the queue for another attempt (receive it again; ask for a longer leaseMs or call extend_lease on long work)`,
    );
    this.messageId = messageId;
  }
}

/**
 * The deliveries an agent received and has not settled, by message id. Shared by every MCP session
 * of one agent (the HTTP server opens one session per client), so any of them may ack what
 * another received.
 */
export class LeasedDeliveries {
  readonly #byId = new Map<string, Delivery>();

  /** Keeps `delivery` until it is settled (a redelivery of the same message replaces the old lease). */
  hold(delivery: Delivery): void {
    this.#byId.set(delivery.id, delivery);
  }

  /** The held delivery of `messageId`. @throws ValidationError when none is held. */
  get(messageId: unknown, agent: string): Delivery {
    if (typeof messageId !== 'string' || messageId.length === 0) {
      throw new ValidationError(`messageId must be the id of a received message, got \`${String(messageId)}\``, { field: 'messageId' });
    }
    const delivery = this.#byId.get(messageId);
    if (delivery === undefined) {
      const held = [...this.#byId.keys()];
      throw new ValidationError(
        `agent \`${agent}\` holds no delivery of message \`${messageId}\` (${held.length === 0 ? 'it holds none' : `it holds ${held.join(', ')}`}): call receive_message first; a message is held until acked, nacked or replied to`,
        { field: 'messageId' },
      );
    }
    return delivery;
  }

  /** Forgets `delivery` (settled), unless a newer delivery of the same message replaced it. */
  settle(delivery: Delivery): void {
    if (this.#byId.get(delivery.id) === delivery) this.#byId.delete(delivery.id);
  }

  /** Message ids held now. */
  ids(): string[] {
    return [...this.#byId.keys()];
  }

  /**
   * Hands every held delivery back to the queue at once (a nack with no delay), e.g. when the
   * server stops: another consumer gets it without waiting for the lease to run out.
   */
  async releaseAll(reason = 'the MCP server holding it stopped'): Promise<void> {
    const held = [...this.#byId.values()];
    this.#byId.clear();
    await Promise.all(held.map((d) => d.nack(new Error(reason), { delayMs: 0 }).catch(() => false)));
  }
}

export interface CreateMcpServerOptions {
  /** The agent name this server acts as: sender of what it sends, the queue it receives from. */
  agent: string;
  /** The bus. The agent is registered on it in pull mode (once per bus, however many servers act as it). */
  bus: MessageBus;
  /** false when the caller registered the agent on the bus itself (pull mode: `bus.registerAgent(agent)`). Default true. */
  register?: boolean;
  /** The state manager for the document and workflow tools; without one those tools are not offered. */
  state?: StateManager;
  /** Leased deliveries, shared when several sessions act as one agent (default: this server's own). */
  leases?: LeasedDeliveries;
  /** The server's name in the MCP handshake (default `concord`). */
  name?: string;
  /** The server's version in the MCP handshake. */
  version?: string;
}

/** Buses the MCP layer registered an agent on, by agent name: registering twice is an error on the bus. */
const registered = new WeakMap<MessageBus, Set<string>>();

/** Registers `agent` on `bus` in pull mode once, however many servers act as it. */
function joinBus(bus: MessageBus, agent: string): void {
  let names = registered.get(bus);
  if (names === undefined) registered.set(bus, (names = new Set()));
  if (names.has(agent)) return;
  bus.registerAgent(agent);
  names.add(agent);
}

/**
 * An MCP server whose tools let an LLM act as agent `agent` on the bus (send, request, a blocking
 * receive with a lease, ack, nack, reply, publish, dead letters) and, with `state`, read and edit
 * versioned documents and advance workflows. Connect it to any MCP transport; `concord mcp` does
 * this over stdio or Streamable HTTP.
 *
 * Every tool failure is a tool error (`isError: true`) carrying the library's error `code` and
 * message: the server never crashes on a bad call.
 *
 * @example
 * const server = createMcpServer({ agent: 'reviewer', bus, state });
 * await server.connect(new StdioServerTransport());
 */
export function createMcpServer(options: CreateMcpServerOptions): McpServer {
  const agent = validateAgentName(options.agent);
  const { bus, state } = options;
  const leases = options.leases ?? new LeasedDeliveries();
  if (options.register !== false) joinBus(bus, agent);

  const server = new McpServer(
    { name: options.name ?? 'concord', version: options.version ?? '0.0.0' },
    {
      instructions:
        `You are agent \`${agent}\` on a Concord message bus. receive_message waits for the next message addressed to you and leases it to you: ` +
        'settle each one with reply (a request: sends the answer and acks), ack (done) or nack (failed, retried later). ' +
        'A message you do not settle before its lease runs out goes back to the queue. ' +
        (state ? 'Documents are versioned: pass expectedVersion when you edit, and on a state_conflict error retry with merge: true or rebase on the current content.' : ''),
    },
  );

  /** Registers a tool whose result is `run`'s object and whose failures are tool errors. */
  const tool = <Shape extends ZodRawShape>(
    name: string,
    description: string,
    inputSchema: Shape,
    run: (args: { [K in keyof Shape]: unknown }, signal: AbortSignal) => Promise<Record<string, unknown>>,
  ): void => {
    server.registerTool(name, { description, inputSchema }, (async (args: { [K in keyof Shape]: unknown }, extra: { signal: AbortSignal }) => {
      try {
        return ok(await run(args, extra.signal));
      } catch (err) {
        return toolError(err);
      }
    }) as never);
  };

  // ------------------------------------------------------------------------------ messages

  tool('send_message', `Send a message from \`${agent}\` to another agent's queue (at-least-once, no reply awaited).`, s.sendMessageInput, async (a) => {
    const message = await bus.send({
      sender: agent,
      recipient: a.recipient as string,
      type: (a.type ?? MessageType.TASK) as MessageType,
      payload: a.payload as Record<string, unknown>,
      priority: a.priority as number | undefined,
      correlationId: a.correlationId as string | undefined,
      headers: a.headers as Record<string, string> | undefined,
      ttlMs: a.ttlMs as number | undefined,
      id: a.id as string | undefined,
    });
    return { message: messageView(message) };
  });

  tool(
    'request',
    `Send a task from \`${agent}\` to another agent and wait for its reply. An error reply fails with code remote_error (its payload attached); no reply in time fails with request_timeout.`,
    s.requestInput,
    async (a) => {
      const reply = await bus.request({
        sender: agent,
        recipient: a.recipient as string,
        payload: a.payload as Record<string, unknown>,
        type: a.type as typeof MessageType.TASK | undefined,
        timeout: a.timeoutMs as number | undefined,
        priority: a.priority as number | undefined,
        correlationId: a.correlationId as string | undefined,
        headers: a.headers as Record<string, string> | undefined,
        ttlMs: a.ttlMs as number | undefined,
      });
      return { reply: messageView(reply) };
    },
  );

  tool(
    'receive_message',
    `Wait (up to timeoutMs, default ${DEFAULT_RECEIVE_WAIT_MS}) for the next message addressed to \`${agent}\`, highest priority first, and lease it to you. ` +
      'Returns {message: null} when none came. Settle it with reply, ack or nack before leaseDeadline, or it is delivered again.',
    s.receiveInput,
    async (a, signal) => {
      const delivery = await bus.receive(agent, {
        timeout: (a.timeoutMs ?? DEFAULT_RECEIVE_WAIT_MS) as number,
        ...(a.leaseMs !== undefined ? { leaseMs: a.leaseMs as number } : {}),
      });
      if (delivery === null) return { message: null };
      if (signal.aborted) {
        // The client gave up on this call: nobody will see the message, so hand it back now.
        await delivery.nack(new Error('the MCP client cancelled receive_message'), { delayMs: 0 }).catch(() => false);
        return { message: null };
      }
      leases.hold(delivery);
      const expectsReply = delivery.type === MessageType.TASK || delivery.type === MessageType.FEEDBACK;
      return {
        message: messageView(delivery),
        leaseDeadline: new Date(delivery.leaseDeadline).toISOString(),
        expectsReply,
        next: expectsReply ? 'answer with reply (messageId, payload), or nack it' : 'ack it when done, or nack it',
      };
    },
  );

  tool('ack_message', 'Done with a received message: removes it from the queue for good.', s.ackInput, async (a) => {
    const delivery = leases.get(a.messageId, agent);
    leases.settle(delivery);
    if (!(await delivery.ack())) throw new LeaseLostError(delivery.id, 'ack');
    return { acked: delivery.id };
  });

  tool(
    'nack_message',
    'Failed to handle a received message: it is retried later (after delayMs, or the bus backoff), or dead-lettered after its last attempt.',
    s.nackInput,
    async (a) => {
      const delivery = leases.get(a.messageId, agent);
      const error = a.error === undefined ? undefined : new Error(String(a.error));
      const ok = await delivery.nack(error, a.delayMs === undefined ? undefined : { delayMs: a.delayMs as number });
      leases.settle(delivery);
      if (!ok) throw new LeaseLostError(delivery.id, 'nack');
      return { nacked: delivery.id, attempt: delivery.attempt };
    },
  );

  tool('extend_lease', 'Keep a received message longer (long work): its lease runs leaseMs from now.', s.extendLeaseInput, async (a) => {
    const delivery = leases.get(a.messageId, agent);
    if (!(await delivery.extendLease(a.leaseMs as number))) {
      leases.settle(delivery);
      throw new LeaseLostError(delivery.id, 'extend the lease of');
    }
    return { messageId: delivery.id, leaseDeadline: new Date(delivery.leaseDeadline).toISOString() };
  });

  tool(
    'reply',
    'Answer a received message: sends a result (or error) to whoever sent it, to their waiting request, with the same correlation, then acks it.',
    s.replyInput,
    async (a) => {
      const delivery = leases.get(a.messageId, agent);
      if (a.ack !== undefined && typeof a.ack !== 'boolean') {
        throw new ValidationError(`ack must be a boolean, got \`${String(a.ack)}\``, { field: 'ack' });
      }
      const reply = await bus.reply(delivery, a.payload as Record<string, unknown>, {
        sender: agent,
        ...(a.type !== undefined ? { type: a.type as MessageType } : {}),
      });
      if (a.ack === false) return { reply: messageView(reply), acked: false };
      leases.settle(delivery);
      // The reply is out either way; a lost lease only means the request may be handled twice.
      const acked = await delivery.ack();
      return {
        reply: messageView(reply),
        acked,
        ...(acked ? {} : { warning: `the lease on ${delivery.id} ran out before the ack: it will be delivered again` }),
      };
    },
  );

  tool('publish', 'Publish to every subscriber of a topic (the message type unless topic is given); nobody subscribed, nobody gets it.', s.publishInput, async (a) => {
    const message = await bus.publish({
      sender: agent,
      type: a.type as MessageType,
      payload: a.payload as Record<string, unknown>,
      topic: a.topic as string | undefined,
      priority: a.priority as number | undefined,
      correlationId: a.correlationId as string | undefined,
      headers: a.headers as Record<string, string> | undefined,
    });
    return { message: messageView(message) };
  });

  tool('list_dead_letters', 'Messages the bus gave up on (unknown recipient, too many attempts, expired), oldest first.', s.deadLettersInput, async (a) => {
    if (a.limit !== undefined && (typeof a.limit !== 'number' || !Number.isInteger(a.limit) || a.limit < 1)) {
      throw new ValidationError(`limit must be an integer >= 1, got \`${String(a.limit)}\``, { field: 'limit' });
    }
    const letters = await bus.getDeadLetters(a.limit === undefined ? {} : { limit: a.limit as number });
    return {
      deadLetters: letters.map((l) => ({
        message: messageView(l.message),
        queue: l.queue,
        reason: l.reason,
        ...(l.error !== undefined ? { error: l.error } : {}),
        attempts: l.attempts,
        deadAt: l.deadAt.toISOString(),
      })),
    };
  });

  if (state) registerStateTools(tool, state, agent);
  return server;
}

type ToolFn = <Shape extends ZodRawShape>(
  name: string,
  description: string,
  inputSchema: Shape,
  run: (args: { [K in keyof Shape]: unknown }, signal: AbortSignal) => Promise<Record<string, unknown>>,
) => void;

function registerStateTools(tool: ToolFn, state: StateManager, agent: string): void {
  const current = async (documentId: unknown) => {
    const doc = await state.getDocumentState(documentId as string);
    if (doc === null) throw new DocumentNotFoundError(documentId as string);
    return doc;
  };

  tool('create_document', 'Create a versioned document at version 1.', s.createDocumentInput, async (a) => {
    const doc = await state.createDocumentState({
      documentId: a.documentId as string,
      topic: a.topic as string,
      content: a.content as string | undefined,
      requirements: a.requirements as string[] | undefined,
      context: a.context as Record<string, unknown> | undefined,
      actor: agent,
    });
    return { document: documentView(doc) };
  });

  tool('read_document', 'Read a document (its current version, or an older one): content, version and metadata.', s.readDocumentInput, async (a) => {
    const doc = a.version === undefined ? await current(a.documentId) : await state.getDocumentAtVersion(a.documentId as string, a.version as number);
    return { document: documentView(doc) };
  });

  tool(
    'update_document',
    `Replace a document's content as \`${agent}\`. With expectedVersion, a document that moved on fails with code state_conflict ` +
      '(expectedVersion, actualVersion and the current document attached); add merge: true to three-way merge non-overlapping edits instead.',
    s.updateDocumentInput,
    async (a) => {
      const doc = await state.updateDocumentContent({
        documentId: a.documentId as string,
        content: a.content as string,
        actor: agent,
        expectedVersion: a.expectedVersion as number | undefined,
        merge: a.merge as boolean | undefined,
        summary: a.summary as string | undefined,
      });
      const last = doc.history[doc.history.length - 1];
      return { document: documentView(doc), ...(last ? { change: changeView(last) } : {}) };
    },
  );

  tool(
    'document_history',
    'A page of the kept versions of a document, oldest first: who changed it, how, and when. By default the 100 newest; ' +
      'for older ones pass before: the first version of the page you have.',
    s.historyInput,
    async (a) => {
      const history = await state.getStateHistory(a.documentId as string, {
        ...(a.limit === undefined ? {} : { limit: a.limit as number }),
        ...(a.before === undefined ? {} : { before: a.before as number }),
      });
      return { documentId: a.documentId, history: history.map(changeView) };
    },
  );

  tool('document_diff', 'A unified diff of a document between two versions (to the current one by default).', s.diffInput, async (a) => {
    const to = a.toVersion === undefined ? await current(a.documentId) : await state.getDocumentAtVersion(a.documentId as string, a.toVersion as number);
    const from = await state.getDocumentAtVersion(a.documentId as string, a.fromVersion as number);
    const stat = diffStat(from.content, to.content);
    return {
      documentId: to.documentId,
      fromVersion: from.version,
      toVersion: to.version,
      added: stat.added,
      removed: stat.removed,
      diff: unifiedDiff(from.content, to.content, { fromLabel: `${to.documentId}@v${from.version}`, toLabel: `${to.documentId}@v${to.version}` }),
    };
  });

  tool('read_workflow', 'A workflow\'s stages, current stage, completed and pending stages, quality scores and iteration.', s.readWorkflowInput, async (a) => {
    const workflow = await state.getWorkflowState(a.workflowId as string);
    if (workflow === null) throw new WorkflowNotFoundError(a.workflowId as string);
    return { workflow: workflowView(workflow) };
  });

  tool(
    'advance_workflow',
    'Enter a workflow stage (re-entering a completed stage reopens it: a revision loop), or complete it with a quality score in 0..1.',
    s.advanceWorkflowInput,
    async (a) => {
      const action = a.action ?? 'enter';
      const workflowId = a.workflowId as string;
      const stage = a.stage as string;
      let workflow;
      if (action === 'enter') workflow = await state.updateStage({ workflowId, stage });
      else if (action === 'complete') workflow = await state.completeStage({ workflowId, stage, qualityScore: a.qualityScore as number });
      else throw new ValidationError(`action must be \`enter\` or \`complete\`, got \`${String(action)}\``, { field: 'action' });
      return { workflow: workflowView(workflow) };
    },
  );
}

export type { CallToolResult };
