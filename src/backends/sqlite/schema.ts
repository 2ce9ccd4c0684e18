import type BetterSqlite3 from 'better-sqlite3';
import { TransportError } from '../../errors.js';

/**
 * The SQLite schema as an ordered list of migrations. `schema_version` holds the number of the
 * last one applied; opening a file runs the missing ones in one `BEGIN IMMEDIATE` transaction,
 * so two processes opening a fresh file at once migrate it exactly once. A later release adds
 * an entry here and never edits a shipped one.
 *
 * Every row carries `ns` (the URL's `?namespace=`, '' by default) so several applications or
 * test runs can share one file.
 */
export interface Migration {
  /** Schema version this migration brings the file to. */
  version: number;
  /** What it changes, for humans. */
  description: string;
  /** The statements, run inside the migrating `BEGIN IMMEDIATE` transaction. */
  sql: string;
}

/** Every migration, oldest first. Append only. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'documents, versions with their history entries, workflows, change feed, locks',
    sql: `
      -- One row per document: a pointer to its current version and the oldest kept.
      CREATE TABLE documents (
        ns             TEXT    NOT NULL,
        document_id    TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        oldest_version INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL,
        PRIMARY KEY (ns, document_id)
      ) WITHOUT ROWID;

      -- One row per kept version: the full document AND its history entry, so a version
      -- without its history entry cannot exist (it is one INSERT).
      CREATE TABLE versions (
        ns          TEXT    NOT NULL,
        document_id TEXT    NOT NULL,
        version     INTEGER NOT NULL,
        content     TEXT    NOT NULL,
        metadata    TEXT    NOT NULL,
        updated_at  INTEGER NOT NULL,
        actor       TEXT    NOT NULL,
        action      TEXT    NOT NULL,
        summary     TEXT,
        changed_at  INTEGER NOT NULL,
        PRIMARY KEY (ns, document_id, version)
      );

      CREATE TABLE workflows (
        ns          TEXT    NOT NULL,
        workflow_id TEXT    NOT NULL,
        revision    INTEGER NOT NULL,
        body        TEXT    NOT NULL,
        PRIMARY KEY (ns, workflow_id)
      ) WITHOUT ROWID;

      -- The change feed. AUTOINCREMENT never reuses a revision, even after trimming, and writes
      -- are serialised by BEGIN IMMEDIATE, so revisions become visible in order.
      CREATE TABLE changes (
        revision   INTEGER PRIMARY KEY AUTOINCREMENT,
        ns         TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        action     TEXT    NOT NULL,
        actor      TEXT,
        changed_at INTEGER NOT NULL
      );
      CREATE INDEX changes_by_ns ON changes (ns, revision);

      -- Lock leases. The row outlives a release so the fencing number keeps growing.
      CREATE TABLE locks (
        ns         TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        token      TEXT,
        fence      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (ns, key)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: 'versions and changes as WITHOUT ROWID tables keyed by what they are read by; per-namespace revisions',
    // Fewer B-trees touched per commit, so fewer pages written (and synced) per transaction:
    // `versions` had a rowid table plus its primary-key index (both written on insert and on
    // compaction); `changes` had a rowid table, an index on (ns, revision) and, through
    // AUTOINCREMENT, a sqlite_sequence row. Revisions become per namespace (MAX + 1 inside the
    // writing `BEGIN IMMEDIATE` transaction): a namespace is its own store, and its feed only
    // ever trims its oldest events, so a revision is never reused.
    sql: `
      CREATE TABLE versions_v2 (
        ns          TEXT    NOT NULL,
        document_id TEXT    NOT NULL,
        version     INTEGER NOT NULL,
        content     TEXT    NOT NULL,
        metadata    TEXT    NOT NULL,
        updated_at  INTEGER NOT NULL,
        actor       TEXT    NOT NULL,
        action      TEXT    NOT NULL,
        summary     TEXT,
        changed_at  INTEGER NOT NULL,
        PRIMARY KEY (ns, document_id, version)
      ) WITHOUT ROWID;
      INSERT INTO versions_v2 (ns, document_id, version, content, metadata, updated_at, actor, action, summary, changed_at)
        SELECT ns, document_id, version, content, metadata, updated_at, actor, action, summary, changed_at FROM versions;
      DROP TABLE versions;
      ALTER TABLE versions_v2 RENAME TO versions;

      CREATE TABLE changes_v2 (
        ns         TEXT    NOT NULL,
        revision   INTEGER NOT NULL,
        kind       TEXT    NOT NULL,
        id         TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        action     TEXT    NOT NULL,
        actor      TEXT,
        changed_at INTEGER NOT NULL,
        PRIMARY KEY (ns, revision)
      ) WITHOUT ROWID;
      INSERT INTO changes_v2 (ns, revision, kind, id, version, action, actor, changed_at)
        SELECT ns, revision, kind, id, version, action, actor, changed_at FROM changes;
      DROP TABLE changes;
      ALTER TABLE changes_v2 RENAME TO changes;
      DELETE FROM sqlite_sequence WHERE name = 'changes';
    `,
  },
];

/** The schema version this release writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** Brings the file to `SCHEMA_VERSION`; refuses a file written by a newer release. */
export function migrate(db: BetterSqlite3.Database, url: string): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)');
    const row = db.prepare('SELECT version FROM schema_version WHERE id = 1').get() as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new TransportError(
        url,
        `the database schema is version ${current}, newer than this release of Concord understands (${SCHEMA_VERSION}); upgrade concord`,
      );
    }
    for (const migration of MIGRATIONS) {
      if (migration.version > current) db.exec(migration.sql);
    }
    if (current < SCHEMA_VERSION) {
      db.prepare('INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version').run(
        SCHEMA_VERSION,
      );
    }
  }).immediate();
}
