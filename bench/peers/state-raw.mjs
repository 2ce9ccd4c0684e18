// Raw compare-and-swap loops, one per engine, each doing what a CAS update with an audit trail
// minimally needs: check the version, write content + version + 1, append a history entry that
// keeps the version's content, atomically. No validation, no cache, no change feed, no compaction.
import { redisClient } from '../lib/common.mjs';

/** memory-raw: a Map of documents and an array of history per document. */
export function memoryRaw() {
  const docs = new Map();
  const history = new Map();
  return {
    async create(id, content) {
      docs.set(id, { version: 1, content, updatedAt: new Date() });
      history.set(id, [{ version: 1, timestamp: new Date(), actor: 'bench', action: 'create', content }]);
      return 1;
    },
    async update(id, expected, content, actor) {
      const doc = docs.get(id);
      if (doc.version !== expected) throw new Error(`conflict: expected ${expected}, at ${doc.version}`);
      const version = expected + 1;
      const now = new Date();
      docs.set(id, { version, content, updatedAt: now });
      history.get(id).push({ version, timestamp: now, actor, action: 'update_content', content });
      return version;
    },
    async close() {},
  };
}

/** sqlite-raw: better-sqlite3, WAL, UPDATE ... WHERE version = ? and the history INSERT in one transaction. */
export async function sqliteRaw(path, { synchronous = 'FULL' } = {}) {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, version INTEGER NOT NULL, content TEXT NOT NULL, updated_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS history (doc_id TEXT NOT NULL, version INTEGER NOT NULL, ts INTEGER NOT NULL, actor TEXT NOT NULL,
      action TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (doc_id, version)) WITHOUT ROWID;`);
  const upd = db.prepare('UPDATE docs SET content = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?');
  const ins = db.prepare('INSERT INTO history (doc_id, version, ts, actor, action, content) VALUES (?, ?, ?, ?, ?, ?)');
  const cas = db.transaction((id, expected, content, actor, now) => {
    if (upd.run(content, now, id, expected).changes !== 1) throw new Error(`conflict: expected ${expected}`);
    ins.run(id, expected + 1, now, actor, 'update_content', content);
    return expected + 1;
  });
  return {
    async create(id, content) {
      const now = Date.now();
      db.transaction(() => {
        db.prepare('INSERT INTO docs (id, version, content, updated_at) VALUES (?, 1, ?, ?)').run(id, content, now);
        ins.run(id, 1, now, 'bench', 'create', content);
      })();
      return 1;
    },
    async update(id, expected, content, actor) {
      return cas(id, expected, content, actor, Date.now());
    },
    async close() {
      db.close();
    },
    pragmas: () => ({ journal_mode: db.pragma('journal_mode', { simple: true }), synchronous: db.pragma('synchronous', { simple: true }) }),
  };
}

const CAS_LUA = `
local v = tonumber(redis.call('HGET', KEYS[1], 'version'))
if v ~= tonumber(ARGV[1]) then return {0, v or -1} end
v = v + 1
redis.call('HSET', KEYS[1], 'version', v, 'content', ARGV[2], 'updatedAt', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
return {1, v}`;

/** redis-lua-raw: one EVALSHA per update: check the version, set content, append the history entry. */
export async function redisLuaRaw(ns) {
  const r = await redisClient();
  const sha = await r.script('LOAD', CAS_LUA);
  const docKey = (id) => `bench:${ns}:doc:${id}`;
  const histKey = (id) => `bench:${ns}:history:${id}`;
  return {
    async create(id, content) {
      const now = Date.now();
      await r
        .multi()
        .hset(docKey(id), 'version', 1, 'content', content, 'updatedAt', now)
        .rpush(histKey(id), JSON.stringify({ version: 1, timestamp: now, actor: 'bench', action: 'create', content }))
        .exec();
      return 1;
    },
    async update(id, expected, content, actor) {
      const now = Date.now();
      const entry = JSON.stringify({ version: expected + 1, timestamp: now, actor, action: 'update_content', content });
      const [ok, v] = await r.evalsha(sha, 2, docKey(id), histKey(id), expected, content, now, entry);
      if (ok !== 1) throw new Error(`conflict: expected ${expected}, at ${v}`);
      return v;
    },
    async close() {
      r.disconnect();
    },
  };
}
