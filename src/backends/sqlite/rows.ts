/**
 * The rows the SqliteStore reads, and their codecs to records and change events. Internal to
 * the SQLite backend.
 */
import type { DocumentRecord, WorkflowRecord } from '../../state/store.js';
import type { ChangeEvent } from '../../state/types.js';
import { readText } from '../text.js';

// Text columns are read as bytes (`CAST(col AS BLOB)`) and decoded by `readText`, so every
// string comes back exactly (see text.ts); JSON columns (metadata, body) are always plain text.
export interface DocumentRow {
  document_id: Buffer;
  version: number;
  content: Buffer;
  metadata: string;
  created_at: number;
  updated_at: number;
}

export interface HistoryRow {
  version: number;
  actor: Buffer;
  action: string;
  summary: Buffer | null;
  changed_at: number;
}

export interface ChangeRow {
  revision: number;
  kind: string;
  id: Buffer;
  version: number;
  action: string;
  actor: Buffer | null;
  changed_at: number;
}

export function toDocument(row: DocumentRow): DocumentRecord {
  return {
    documentId: readText(row.document_id),
    version: row.version,
    content: readText(row.content),
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

export function toWorkflow(row: { revision: number; body: string }): WorkflowRecord {
  const body = JSON.parse(row.body) as Omit<WorkflowRecord, 'createdAt' | 'updatedAt' | 'revision'> & {
    createdAt: number;
    updatedAt: number;
  };
  return { ...body, createdAt: new Date(body.createdAt), updatedAt: new Date(body.updatedAt), revision: row.revision };
}

export function toChange(row: ChangeRow): ChangeEvent {
  return changeEvent({ ...row, id: readText(row.id), actor: readText(row.actor) });
}

export function changeEvent(row: {
  revision: number;
  kind: string;
  id: string;
  version: number;
  action: string;
  actor: string | null;
  changed_at: number;
}): ChangeEvent {
  const event: ChangeEvent = {
    revision: row.revision,
    kind: row.kind as ChangeEvent['kind'],
    id: row.id,
    version: row.version,
    action: row.action as ChangeEvent['action'],
    timestamp: new Date(row.changed_at),
  };
  if (row.actor !== null) event.actor = row.actor;
  return event;
}
