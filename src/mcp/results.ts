import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ConcordError, StateConflictError, type DocumentState, type Message, type StateChange, type WorkflowState } from '../index.js';

/**
 * How tool results and tool errors look on the wire. Every result is a JSON object, sent both as
 * `structuredContent` and as its JSON text (clients that read only `content` see the same data).
 */

/** A successful tool result. */
export function ok(value: Record<string, unknown>): CallToolResult {
  const data = plain(value);
  return { content: [{ type: 'text', text: JSON.stringify(data, null, 2) }], structuredContent: data };
}

/**
 * A failed tool call as an MCP tool error (`isError: true`), carrying `{ error: { code, name,
 * message, ...fields } }`: a Concord error's stable `code` and the fields a caller acts on (for
 * `state_conflict`: `expectedVersion`, `actualVersion` and the `current` document). Anything
 * else is `code: 'internal'`. Never throws, so no tool failure reaches the transport.
 */
export function toolError(err: unknown): CallToolResult {
  const error = describeError(err);
  return { isError: true, content: [{ type: 'text', text: JSON.stringify({ error }, null, 2) }], structuredContent: { error } };
}

/** The JSON form of an error: code, name, message and the error's own fields. */
export function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof StateConflictError) {
    return plain({
      code: err.code,
      name: err.name,
      message: err.message,
      documentId: err.documentId,
      expectedVersion: err.expectedVersion,
      actualVersion: err.actualVersion,
      current: isDocument(err.current) ? documentView(err.current) : err.current,
      conflicts: err.conflicts,
    });
  }
  if (err instanceof ConcordError) {
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(err)) if (key !== 'cause' && value !== undefined) fields[key] = value;
    return plain({ ...fields, code: err.code, name: err.name, message: err.message });
  }
  if (err instanceof Error) return { code: 'internal', name: err.name, message: err.message };
  return { code: 'internal', name: 'Error', message: String(err) };
}

/** A message as the model sees it (timestamps as ISO-8601 strings). */
export function messageView(m: Message): Record<string, unknown> {
  return {
    id: m.id,
    type: m.type,
    sender: m.sender,
    recipient: m.recipient,
    payload: m.payload,
    timestamp: m.timestamp.toISOString(),
    priority: m.priority,
    ...(m.correlationId !== undefined ? { correlationId: m.correlationId } : {}),
    headers: m.headers,
    attempt: m.attempt,
    ...(m.ttlMs !== undefined ? { ttlMs: m.ttlMs } : {}),
  };
}

/** A document without its history window (`document_history` reads that). */
export function documentView(d: DocumentState): Record<string, unknown> {
  return {
    documentId: d.documentId,
    version: d.version,
    content: d.content,
    metadata: d.metadata,
    createdAt: d.createdAt.toISOString(),
    updatedAt: d.updatedAt.toISOString(),
  };
}

export function changeView(c: StateChange): Record<string, unknown> {
  return {
    version: c.version,
    timestamp: c.timestamp.toISOString(),
    actor: c.actor,
    action: c.action,
    ...(c.summary !== undefined ? { summary: c.summary } : {}),
  };
}

export function workflowView(w: WorkflowState): Record<string, unknown> {
  return plain({ ...w });
}

function isDocument(value: unknown): value is DocumentState {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as DocumentState).documentId === 'string' &&
    (value as DocumentState).createdAt instanceof Date
  );
}

/** JSON data only (Dates as ISO strings, no undefined), as a client will parse it. */
function plain(value: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
