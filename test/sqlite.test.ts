import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteStore, MIGRATIONS, parseSqliteUrl, SCHEMA_VERSION, SqliteStore } from '../src/backends/sqlite/index.js';
import { decodeWtf8, readText } from '../src/backends/text.js';
import { ClosedError, TransportError, ValidationError } from '../src/errors.js';
import { StateManager } from '../src/state/manager.js';
import type { ChangeEvent } from '../src/state/types.js';
import { waitFor } from './helpers/services.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WRITER = path.join(ROOT, 'test/fixtures/sqlite-writer.ts');

interface Writer {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Starts the writer fixture as a separate OS process (tsx on the sources, no build needed). */
function startWriter(options: Record<string, unknown>): Writer {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, JSON.stringify(options)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let err = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    async waitFor(pattern, timeoutMs = 30_000) {
      let match: RegExpMatchArray | null = null;
      await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`writer exited (${child.exitCode}) before printing ${pattern}: ${err}`);
          for (let i = lines.length - 1; i >= 0 && !match; i--) match = lines[i]!.match(pattern);
          return match !== null;
        },
        `the writer to print ${pattern}`,
        timeoutMs,
        10,
      );
      return match!;
    },
  };
}

async function finished(writer: Writer): Promise<void> {
  const { code, signal } = await writer.exited;
  if (code !== 0) throw new Error(`writer failed (code ${code}, signal ${signal}): ${writer.stderr()}`);
}

/** The structural invariants of a file after anything (including SIGKILL): checked with raw SQL. */
function checkConsistency(file: string, documentId: string): { version: number; oldest: number } {
  const db = new Database(file, { readonly: true });
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const head = db.prepare('SELECT version, oldest_version FROM documents WHERE ns = ? AND document_id = ?').get('', documentId) as {
      version: number;
      oldest_version: number;
    };
    const span = db
      .prepare(
        'SELECT MIN(version) AS lo, MAX(version) AS hi, COUNT(*) AS n FROM versions WHERE ns = ? AND document_id = ? AND version >= ?',
      )
      .get('', documentId, head.oldest_version) as { lo: number; hi: number; n: number };
    // Versions are contiguous from the oldest kept to the current one...
    expect(span.hi).toBe(head.version);
    expect(span.lo).toBe(head.oldest_version);
    expect(span.n).toBe(head.version - head.oldest_version + 1);
    // ...and compacted rows below the oldest kept (deleted in batches) are never a full batch.
    const compacted = db
      .prepare('SELECT COUNT(*) AS n FROM versions WHERE ns = ? AND document_id = ? AND version < ?')
      .get('', documentId, head.oldest_version) as { n: number };
    expect(compacted.n).toBeLessThan(64);
    // ...and every one of them carries its history entry.
    const incomplete = db
      .prepare("SELECT COUNT(*) AS n FROM versions WHERE ns = '' AND (actor IS NULL OR actor = '' OR action IS NULL OR changed_at IS NULL)")
      .get() as { n: number };
    expect(incomplete.n).toBe(0);
    // The change feed has the event of the current version.
    const last = db.prepare("SELECT MAX(version) AS v FROM changes WHERE ns = '' AND kind = 'document' AND id = ?").get(documentId) as {
      v: number;
    };
    expect(last.v).toBe(head.version);
    return { version: head.version, oldest: head.oldest_version };
  } finally {
    db.close();
  }
}

describe('SQLite store', () => {
  let dir: string;
  let file: string;
  const cleanup: Array<() => Promise<unknown> | unknown> = [];

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'concord-sqlite-'));
    file = path.join(dir, 'state.db');
  });

  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
    await rm(dir, { recursive: true, force: true });
  });

  function managerOn(url: string, options: ConstructorParameters<typeof StateManager>[0] = {}): StateManager {
    const m = new StateManager({ ...options, store: url });
    cleanup.push(() => m.close());
    return m;
  }

  function writer(options: Record<string, unknown>): Writer {
    const w = startWriter(options);
    cleanup.push(() => {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
      return w.exited;
    });
    return w;
  }

  describe('URLs and options', () => {
    it('parses sqlite: URLs with path forms and query options', () => {
      expect(parseSqliteUrl('sqlite:./state.db')).toEqual({ filename: './state.db' });
      expect(parseSqliteUrl('sqlite:/abs/state.db')).toEqual({ filename: '/abs/state.db' });
      expect(parseSqliteUrl('sqlite:///abs/state.db')).toEqual({ filename: '/abs/state.db' });
      expect(parseSqliteUrl('sqlite::memory:')).toEqual({ filename: ':memory:' });
      expect(parseSqliteUrl('sqlite:./s.db?namespace=app&synchronous=normal&pollIntervalMs=20')).toEqual({
        filename: './s.db',
        namespace: 'app',
        synchronous: 'normal',
        pollIntervalMs: 20,
      });
      expect(createSqliteStore('sqlite:./rel.db').filename).toBe(path.resolve('rel.db'));
    });

    it('rejects bad URLs and options with ValidationError', () => {
      expect(() => parseSqliteUrl('sqlite:')).toThrow(ValidationError);
      expect(() => parseSqliteUrl('sqlite:./s.db?synchronous=off')).toThrow(/synchronous must be/);
      expect(() => parseSqliteUrl('sqlite:./s.db?pollIntervalMs=-1')).toThrow(ValidationError);
      expect(() => parseSqliteUrl('sqlite:./s.db?namespace=bad name')).toThrow(ValidationError);
      expect(() => parseSqliteUrl('postgres://x')).toThrow(ValidationError);
      expect(() => new SqliteStore({ filename: '' })).toThrow(ValidationError);
    });

    it('a manager made from a sqlite: URL opens the file and closes it on close()', async () => {
      const state = new StateManager({ store: `sqlite:${file}` });
      await state.createDocumentState({ documentId: 'doc', topic: 't', content: 'persisted' });
      await state.close();
      await expect(state.getDocumentState('doc')).rejects.toThrow(ClosedError);
      const again = managerOn(`sqlite:${file}`);
      expect((await again.getDocumentState('doc'))?.content).toBe('persisted');
    });

    it('an unopenable file is a TransportError naming the URL', async () => {
      const state = managerOn(`sqlite:${path.join(dir, 'missing-dir', 'x.db')}`);
      const err = await state.ready().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TransportError);
      expect((err as TransportError).message).toContain('missing-dir');
    });
  });

  describe('schema', () => {
    it('creates a WAL database with a schema_version table', async () => {
      const store = new SqliteStore({ filename: file });
      cleanup.push(() => store.close());
      await store.connect();
      await store.connect(); // idempotent
      const db = new Database(file, { readonly: true });
      try {
        expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
        expect(db.prepare('SELECT version FROM schema_version').get()).toEqual({ version: SCHEMA_VERSION });
        const tables = (
          db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>
        ).map((t) => t.name);
        expect(tables).toEqual(expect.arrayContaining(['changes', 'documents', 'locks', 'schema_version', 'versions', 'workflows']));
      } finally {
        db.close();
      }
    });

    it('re-opening migrates nothing twice and keeps the data', async () => {
      const a = managerOn(`sqlite:${file}`);
      await a.createDocumentState({ documentId: 'doc', topic: 't' });
      await a.close();
      const b = managerOn(`sqlite:${file}`);
      expect((await b.getDocumentState('doc'))?.version).toBe(1);
    });

    it('several processes opening a fresh file at once migrate it exactly once', async () => {
      const ws = Array.from({ length: 3 }, (_, i) => writer({ file, documentId: 'doc', mode: 'open', actor: `o${i}` }));
      await Promise.all(ws.map(finished));
      const db = new Database(file, { readonly: true });
      try {
        expect(db.prepare('SELECT id, version FROM schema_version').all()).toEqual([{ id: 1, version: SCHEMA_VERSION }]);
      } finally {
        db.close();
      }
      const state = managerOn(`sqlite:${file}`);
      expect((await state.createDocumentState({ documentId: 'doc', topic: 't' })).version).toBe(1);
    });

    it('migrates a version 1 file to the current schema, keeping documents, history and the feed cursor', async () => {
      // A file as release 1 wrote it: its schema, one document with three versions (the oldest
      // compacted) and their change-feed events.
      const db = new Database(file);
      db.exec(MIGRATIONS[0]!.sql);
      db.exec(
        'CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1, 1);',
      );
      db.prepare('INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)').run('', 'doc', 3, 2, 1_000, 3_000);
      for (const v of [2, 3]) {
        db.prepare('INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
          '',
          'doc',
          v,
          `content ${v}`,
          '{"topic":"t"}',
          v * 1_000,
          'w',
          'update_content',
          `+1 -1 lines`,
          v * 1_000,
        );
      }
      for (const v of [1, 2, 3]) {
        db.prepare('INSERT INTO changes (ns, kind, id, version, action, actor, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
          '',
          'document',
          'doc',
          v,
          v === 1 ? 'create' : 'update_content',
          'w',
          v * 1_000,
        );
      }
      db.close();

      const state = managerOn(`sqlite:${file}`);
      const doc = await state.getDocumentState('doc');
      expect(doc).toMatchObject({ version: 3, content: 'content 3', metadata: { topic: 't' } });
      expect(doc?.createdAt.getTime()).toBe(1_000);
      expect((await state.getStateHistory('doc')).map((h) => [h.version, h.summary])).toEqual([
        [2, '+1 -1 lines'],
        [3, '+1 -1 lines'],
      ]);
      expect((await state.getDocumentAtVersion('doc', 2)).content).toBe('content 2');
      const next = await state.updateDocumentContent({ documentId: 'doc', content: 'content 4', actor: 'w', expectedVersion: 3 });
      expect(next.version).toBe(4);
      const check = new Database(file, { readonly: true });
      try {
        expect(check.prepare('SELECT version FROM schema_version').get()).toEqual({ version: SCHEMA_VERSION });
        // The feed goes on from the old revisions: none is reused.
        expect(check.prepare("SELECT revision, version FROM changes WHERE ns = '' ORDER BY revision").all()).toEqual([
          { revision: 1, version: 1 },
          { revision: 2, version: 2 },
          { revision: 3, version: 3 },
          { revision: 4, version: 4 },
        ]);
      } finally {
        check.close();
      }
    });

    it('compacted versions stay invisible while their rows wait for a batch delete', async () => {
      const small = managerOn(`sqlite:${file}`, { historyLimit: 3 });
      let doc = await small.createDocumentState({ documentId: 'doc', topic: 't', content: 'v1' });
      for (let v = 2; v <= 70; v++)
        doc = await small.updateDocumentContent({ documentId: 'doc', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
      const large = managerOn(`sqlite:${file}`, { historyLimit: 1000 });
      for (const state of [small, large]) {
        expect((await state.getStateHistory('doc')).map((h) => h.version)).toEqual([68, 69, 70]);
        await expect(state.getDocumentAtVersion('doc', 67)).rejects.toMatchObject({ code: 'version_not_found' });
        expect((await state.getDocumentAtVersion('doc', 68)).content).toBe('v68');
      }
      // A larger limit afterwards keeps from the oldest still kept; nothing compacted comes back.
      doc = await large.updateDocumentContent({ documentId: 'doc', content: 'v71', actor: 'w', expectedVersion: 70 });
      expect((await large.getStateHistory('doc')).map((h) => h.version)).toEqual([68, 69, 70, 71]);
      expect(doc.history.map((h) => h.version)).toEqual([68, 69, 70, 71]);
      expect(checkConsistency(file, 'doc')).toEqual({ version: 71, oldest: 68 });
    });

    it('refuses a file written by a newer schema', async () => {
      const db = new Database(file);
      db.exec(
        'CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1, 99);',
      );
      db.close();
      const store = new SqliteStore({ filename: file });
      cleanup.push(() => store.close());
      const err = await store.connect().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TransportError);
      expect((err as Error).message).toMatch(/schema is version 99, newer/);
    });
  });

  describe('exact text', () => {
    const TEXTS = [
      'plain ascii',
      'emoji 😀 and a real \uFFFD',
      'cut emoji \uD83D',
      '\uDE00 lone low',
      'reversed \uDE00\uD83D',
      'nul \u0000 inside',
    ];

    it('a file written by the previous release reads back every string exactly, and stays writable', async () => {
      // Written by the store of commit d88f65f (see test/fixtures/sqlite/make-previous-release-db.mjs),
      // which read lone surrogates back as U+FFFD: its bytes held them all along.
      await copyFile(path.join(ROOT, 'test/fixtures/sqlite/previous-release.db'), file);
      const state = managerOn(`sqlite:${file}`);
      for (const [i, text] of TEXTS.entries()) {
        const documentId = i === 0 ? 'doc' : `doc ${text}`;
        const doc = (await state.getDocumentState(documentId))!;
        expect(doc.documentId).toBe(documentId);
        expect(doc.content).toBe(`${text}\n2`);
        expect(doc.metadata).toEqual({ topic: text, requirements: [text], context: { [text]: text } });
        expect((await state.getDocumentAtVersion(documentId, 1)).content).toBe(text);
        const history = await state.getStateHistory(documentId);
        expect(history.map((h) => h.actor)).toEqual(['system', text]);
        expect(history[1]!.summary!.startsWith(`${text}: `)).toBe(true);
      }
      const wf = (await state.getWorkflowState('wf \uD83D'))!;
      expect(wf).toMatchObject({ stages: ['a \uD83D', 'b'], stage: 'a \uD83D', data: { note: 'cut \uD83D', nul: '\u0000' } });
      const updated = await state.updateDocumentContent({
        documentId: 'doc cut emoji \uD83D',
        content: 'next \uDBFF',
        actor: 'new \uD800',
      });
      expect(updated.version).toBe(3);
      const again = managerOn(`sqlite:${file}`);
      expect((await again.getDocumentState('doc cut emoji \uD83D'))?.content).toBe('next \uDBFF');
      expect((await again.getStateHistory('doc cut emoji \uD83D')).map((h) => h.actor)).toEqual([
        'system',
        'cut emoji \uD83D',
        'new \uD800',
      ]);
      const store = new SqliteStore({ filename: file });
      cleanup.push(() => store.close());
      expect((await store.listDocuments()).map((d) => d.documentId).sort()).toEqual(
        TEXTS.map((t, i) => (i === 0 ? 'doc' : `doc ${t}`)).sort(),
      );
    });

    it('text columns hold the generalized UTF-8 of every code unit (the format of every release)', async () => {
      const state = managerOn(`sqlite:${file}`);
      await state.createDocumentState({ documentId: 'd\uD83D', topic: 't', content: 'a\uD83Db\uDE00\u0000c😀' });
      await state.close();
      const db = new Database(file, { readonly: true });
      try {
        const row = db.prepare('SELECT hex(document_id) AS id, hex(content) AS content FROM versions').get() as {
          id: string;
          content: string;
        };
        expect(row.id).toBe('64EDA0BD');
        expect(row.content).toBe('61EDA0BD62EDB8800063F09F9880');
      } finally {
        db.close();
      }
    });

    it('readText decodes any string better-sqlite3 wrote, and agrees with UTF-8 on every byte sequence', () => {
      const db = new Database(':memory:');
      try {
        db.exec('CREATE TABLE t (x TEXT)');
        const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
        const read = db.prepare('SELECT CAST(x AS BLOB) AS x FROM t').pluck();
        const codeUnits = fc.array(
          fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.integer({ min: 0, max: 0xffff })),
          { maxLength: 40 },
        );
        fc.assert(
          fc.property(codeUnits, (units) => {
            const text = String.fromCharCode(...units);
            db.exec('DELETE FROM t');
            insert.run(text);
            expect(readText(read.get() as Buffer)).toBe(text);
          }),
          { numRuns: 500 },
        );
        fc.assert(
          fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
            const utf8 = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
            // Where UTF-8 decodes without loss, WTF-8 agrees; elsewhere it yields at least as much.
            if (!utf8.includes('\uFFFD')) expect(decodeWtf8(bytes)).toBe(utf8);
          }),
          { numRuns: 500 },
        );
        expect(decodeWtf8(Uint8Array.from([0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]))).toBe('\uD83D\uDE00');
        expect(decodeWtf8(Uint8Array.from([0xc0, 0x80, 0xff, 0x61]))).toBe('\uFFFD\uFFFD\uFFFD\u0061');
      } finally {
        db.close();
      }
    });
  });

  describe('file modes', () => {
    /** Mode bits of the database file and its -wal and -shm files, after a write through `url`. */
    async function modesAfterWrite(url: string): Promise<number[]> {
      const store = createSqliteStore(url);
      cleanup.push(() => store.close());
      const state = new StateManager({ store });
      await state.createDocumentState({ documentId: 'doc', topic: 't', content: 'secret' });
      // While the store is open: the -wal and -shm files exist.
      const modes = await Promise.all([file, `${file}-wal`, `${file}-shm`].map(async (f) => (await stat(f)).mode & 0o777));
      await state.close();
      return modes;
    }

    it('a new database and its -wal and -shm files are readable by their owner only', async () => {
      const umask = process.umask();
      expect(await modesAfterWrite(`sqlite:${file}`)).toEqual([0o600, 0o600, 0o600].map((m) => m & ~umask));
    });

    it('the mode option (or ?mode= in the URL) chooses other bits, minus the umask', async () => {
      const umask = process.umask();
      expect(await modesAfterWrite(`sqlite:${file}?mode=0640`)).toEqual([0o640, 0o640, 0o640].map((m) => m & ~umask));
      expect(parseSqliteUrl('sqlite:./s.db?mode=660')).toEqual({ filename: './s.db', mode: 0o660 });
      const store = new SqliteStore({ filename: path.join(dir, 'other.db'), mode: 0o644 });
      cleanup.push(() => store.close());
      await store.connect();
      expect((await stat(path.join(dir, 'other.db'))).mode & 0o777).toBe(0o644 & ~umask);
    });

    it('a stricter umask still applies', async () => {
      const previous = process.umask(0o077);
      try {
        expect(await modesAfterWrite(`sqlite:${file}?mode=664`)).toEqual([0o600, 0o600, 0o600]);
      } finally {
        process.umask(previous);
      }
    });

    it('an existing file keeps its mode', async () => {
      await writeFile(file, '');
      await chmod(file, 0o644);
      expect(await modesAfterWrite(`sqlite:${file}`)).toEqual([0o644, 0o644, 0o644]);
    });

    it('a mode without owner read and write, or not octal, is a ValidationError', () => {
      expect(() => new SqliteStore({ filename: file, mode: 0o400 })).toThrow(/mode must be permission bits 0o600\.\.0o777.*got `0o400`/);
      expect(() => new SqliteStore({ filename: file, mode: 0o1777 })).toThrow(ValidationError);
      expect(() => parseSqliteUrl('sqlite:./s.db?mode=rw')).toThrow(/mode must be octal permission bits.*got `rw`/);
      expect(() => parseSqliteUrl('sqlite:./s.db?mode=0999')).toThrow(ValidationError);
      expect(() => createSqliteStore('sqlite:./s.db?mode=0400')).toThrow(ValidationError);
    });
  });

  describe('namespaces', () => {
    it('scopes documents, workflows, locks and the change feed to the URL namespace', async () => {
      const a = managerOn(`sqlite:${file}?namespace=a`);
      const b = managerOn(`sqlite:${file}?namespace=b`);
      const seenByB: ChangeEvent[] = [];
      await b.watch('*', (e) => seenByB.push(e)).ready;
      await a.createDocumentState({ documentId: 'doc', topic: 'in a' });
      await a.createWorkflowState({ workflowId: 'wf', stages: ['s'] });
      expect(await b.getDocumentState('doc')).toBeNull();
      expect(await b.getWorkflowState('wf')).toBeNull();
      await b.createDocumentState({ documentId: 'doc', topic: 'in b' });
      expect((await a.getDocumentState('doc'))?.metadata['topic']).toBe('in a');
      const lock = await a.locks.acquire('doc');
      expect(await b.locks.tryAcquire('doc')).not.toBeNull();
      await lock.release();
      await waitFor(() => seenByB.length === 1, 'b’s own event');
      expect(seenByB[0]?.id).toBe('doc');
      expect((await a.refreshMetrics()).activeDocuments).toBe(1);
    });
  });

  describe('busy files', () => {
    it('retries a write while another connection holds the write lock, without blocking the event loop', async () => {
      const store = new SqliteStore({ filename: file, busyTimeoutMs: 5 });
      cleanup.push(() => store.close());
      const state = new StateManager({ store });
      cleanup.push(() => state.close());
      await state.createDocumentState({ documentId: 'doc', topic: 't' });
      const other = new Database(file);
      cleanup.push(() => other.close());
      other.exec('BEGIN IMMEDIATE');
      let settled = false;
      const write = state
        .updateDocumentContent({ documentId: 'doc', content: 'after the lock', actor: 'w' })
        .finally(() => (settled = true));
      let ticks = 0;
      await waitFor(() => ++ticks >= 5, 'the event loop to keep turning');
      expect(settled).toBe(false);
      other.exec('COMMIT');
      expect((await write).version).toBe(2);
    });

    it('gives up with TransportError after busyRetryMs', async () => {
      const store = new SqliteStore({ filename: file, busyTimeoutMs: 5, busyRetryMs: 50 });
      cleanup.push(() => store.close());
      const state = new StateManager({ store });
      cleanup.push(() => state.close());
      await state.createDocumentState({ documentId: 'doc', topic: 't' });
      const other = new Database(file);
      cleanup.push(() => other.close());
      other.exec('BEGIN IMMEDIATE');
      const err = await state.updateDocumentContent({ documentId: 'doc', content: 'x', actor: 'w' }).then(
        () => null,
        (e: unknown) => e,
      );
      other.exec('ROLLBACK');
      expect(err).toBeInstanceOf(TransportError);
      expect((err as Error).message).toMatch(/busy/);
      expect((await state.getDocumentState('doc'))?.version).toBe(1);
    });
  });

  describe('several OS processes on one file', () => {
    async function runTogether(mode: string, count: number, writers = 2): Promise<void> {
      const seed = managerOn(`sqlite:${file}`);
      await seed.createDocumentState({ documentId: 'doc', topic: 't', content: 'start' });
      const ws = Array.from({ length: writers }, (_, i) => writer({ file, documentId: 'doc', mode, actor: `p${i}`, count, barrier: true }));
      await Promise.all(ws.map((w) => w.waitFor(/^ready$/)));
      for (const w of ws) w.child.stdin!.write('go\n');
      await Promise.all(ws.map(finished));
    }

    it('two processes writing last-writer-wins updates at once: every write is exactly one version with its history entry', async () => {
      await runTogether('lww', 150);
      const state = managerOn(`sqlite:${file}`);
      const doc = await state.getDocumentState('doc');
      expect(doc?.version).toBe(301);
      const history = await state.getStateHistory('doc', { limit: 1000 }); // every entry (the default page is 100)
      expect(history.map((h) => h.version)).toEqual(Array.from({ length: 301 }, (_, i) => i + 1));
      expect(history.filter((h) => h.actor === 'p0')).toHaveLength(150);
      expect(history.filter((h) => h.actor === 'p1')).toHaveLength(150);
      checkConsistency(file, 'doc');
    });

    it('two processes appending with expectedVersion and retry lose no line', async () => {
      await runTogether('optimistic', 100);
      const state = managerOn(`sqlite:${file}`);
      const doc = await state.getDocumentState('doc');
      expect(doc?.version).toBe(201);
      const lines = doc!.content.split('\n');
      expect(lines).toHaveLength(201);
      for (let i = 0; i < 100; i++) {
        expect(lines).toContain(`p0 ${i}`);
        expect(lines).toContain(`p1 ${i}`);
      }
    });

    it('withLock excludes between processes: appends under the lock never conflict', async () => {
      await runTogether('locked', 60);
      const state = managerOn(`sqlite:${file}`);
      const doc = await state.getDocumentState('doc');
      expect(doc?.version).toBe(121);
      expect(new Set(doc!.content.split('\n')).size).toBe(121);
    });

    it('another process’s writes reach this process’s watchers and cache', async () => {
      const state = managerOn(`sqlite:${file}?pollIntervalMs=20`, { cache: { ttlMs: 60_000 } });
      await state.createDocumentState({ documentId: 'doc', topic: 't' });
      expect((await state.getDocumentState('doc'))?.version).toBe(1);
      const events: ChangeEvent[] = [];
      await state.watch('doc', (e) => events.push(e)).ready;
      await finished(writer({ file, documentId: 'doc', mode: 'lww', actor: 'child', count: 5 }));
      await waitFor(() => events.length === 5, 'the child’s five change events');
      expect(events.map((e) => [e.version, e.actor])).toEqual([2, 3, 4, 5, 6].map((v) => [v, 'child']));
      expect((await state.getDocumentState('doc'))?.content).toBe('child 4');
      await waitFor(() => state.metrics().totalStateChanges === 6, 'metrics to include the child’s writes');
    });

    it('a writer killed with SIGKILL mid-run leaves the file consistent, and writing resumes', async () => {
      const state = managerOn(`sqlite:${file}`);
      await state.createDocumentState({ documentId: 'doc', topic: 't' });
      let previous = 1;
      for (let round = 0; round < 3; round++) {
        const w = writer({ file, documentId: 'doc', mode: 'forever', actor: `k${round}`, historyLimit: 25, padding: 64_000 });
        await w.waitFor(/^progress (\d+)$/);
        const target = previous + 40;
        await waitFor(() => w.lines.some((l) => Number(l.split(' ')[1]) >= target), `the writer to pass version ${target}`, 30_000, 10);
        w.child.kill('SIGKILL');
        const { signal } = await w.exited;
        expect(signal).toBe('SIGKILL');
        const { version, oldest } = checkConsistency(file, 'doc');
        expect(version).toBeGreaterThanOrEqual(target);
        expect(version - oldest + 1).toBeLessThanOrEqual(25);
        previous = version;
      }
      const resumed = await state.updateDocumentContent({ documentId: 'doc', content: 'after the crashes', actor: 'survivor' });
      expect(resumed.version).toBe(previous + 1);
      expect((await state.getDocumentAtVersion('doc', previous)).history.at(-1)?.version).toBe(previous);
      checkConsistency(file, 'doc');
    });

    it('a lock held by a killed process is free once its lease runs out, with a higher fence', async () => {
      const state = managerOn(`sqlite:${file}`);
      const holder = writer({ file, documentId: 'doc', mode: 'hold-lock', actor: 'holder', lockTtlMs: 1000 });
      const [, fence] = await holder.waitFor(/^locked (\d+)$/);
      expect(await state.locks.tryAcquire('doc')).toBeNull();
      holder.child.kill('SIGKILL');
      await holder.exited;
      const lock = await state.locks.acquire('doc', { waitMs: 10_000 });
      expect(lock.fence).toBeGreaterThan(Number(fence));
      await lock.release();
    });
  });
});
