/**
 * `concord-agents/sqlite`: the durable embedded state store. Needs the optional peer dependency
 * `better-sqlite3`.
 *
 * @example
 * import { StateManager } from 'concord-agents';
 * import { createSqliteStore } from 'concord-agents/sqlite';
 * const state = new StateManager({ store: createSqliteStore('sqlite:./state.db') });
 * // equivalent: new StateManager({ store: 'sqlite:./state.db' })
 */
import { parseSqliteUrl, SqliteStore } from './store.js';

export { SqliteStore, parseSqliteUrl, type SqliteStoreOptions } from './store.js';
export { MIGRATIONS, SCHEMA_VERSION, type Migration } from './schema.js';

/**
 * A SqliteStore from a URL: `sqlite:./path.db`, `sqlite:/abs/path.db`, `sqlite::memory:`, with
 * optional `?namespace=NAME&synchronous=full|normal&busyTimeoutMs=250&pollIntervalMs=50&mode=600`.
 * The file is opened (and migrated) by `connect()`, which the StateManager calls. A file it
 * creates is `mode` (default 600: owner only; the umask still applies), as are its `-wal` and
 * `-shm` files; an existing file keeps its mode.
 */
export function createSqliteStore(url: string): SqliteStore {
  return new SqliteStore(parseSqliteUrl(url));
}
