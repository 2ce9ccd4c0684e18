import { createHash } from 'node:crypto';
import { z } from 'zod';
import { SnapshotError } from '../errors.js';
import type { DocumentRecord } from './store.js';
import type { Snapshot } from './types.js';

/**
 * JSON with object keys sorted at every depth: the same value always gives the same text,
 * whatever order its keys were built in (or came back from a backend in).
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** sha256 hex of the canonical JSON of every field of `snapshot` except `checksum`. */
export function snapshotChecksum(snapshot: Omit<Snapshot, 'checksum'> & { checksum?: string }): string {
  const { checksum: _ignored, ...rest } = snapshot;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** A snapshot (plain JSON, checksummed) of a stored document version. */
export function makeSnapshot(record: DocumentRecord, takenAt = new Date()): Snapshot {
  const body: Omit<Snapshot, 'checksum'> = {
    kind: 'concord.snapshot',
    formatVersion: 1,
    documentId: record.documentId,
    version: record.version,
    content: record.content,
    metadata: structuredClone(record.metadata),
    createdAt: record.createdAt.toISOString(),
    takenAt: takenAt.toISOString(),
  };
  return { ...body, checksum: snapshotChecksum(body) };
}

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'must be an ISO-8601 date' });

const snapshotSchema = z.strictObject({
  kind: z.literal('concord.snapshot'),
  formatVersion: z.literal(1),
  documentId: z.string().min(1),
  version: z.number().int().positive(),
  content: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: isoDate,
  takenAt: isoDate,
  checksum: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits (sha256)'),
});

/**
 * Checks that `value` is a Snapshot (shape first, then checksum) and returns it typed.
 * Accepts what `JSON.parse(JSON.stringify(snapshot))` gives back.
 *
 * @throws SnapshotError saying which field is wrong, or that the checksum does not match.
 */
export function verifySnapshot(value: unknown): Snapshot {
  const parsed = snapshotSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : 'snapshot'}: ${issue.message}`)
      .join('; ');
    throw new SnapshotError(`not a valid Concord snapshot (${problems})`, { cause: parsed.error });
  }
  const snapshot = parsed.data as Snapshot;
  const expected = snapshotChecksum(snapshot);
  if (expected !== snapshot.checksum) {
    throw new SnapshotError(
      `snapshot of \`${snapshot.documentId}\` version ${snapshot.version} fails its checksum: ` +
        `stored ${snapshot.checksum.slice(0, 12)}…, computed ${expected.slice(0, 12)}… (was it edited or truncated?)`,
    );
  }
  return snapshot;
}
