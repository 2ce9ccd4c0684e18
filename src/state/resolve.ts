import { ConcordError } from '../errors.js';
import type { StateStore } from './store.js';

/**
 * How the state manager turns a store URL into a store without importing any backend: the package
 * entry (`src/connect.ts`) installs the resolver, and `StateManager` asks for it only when given a
 * URL or nothing (the default, `memory://`). Data flows one way: entry → connect → backends → ports.
 */
export interface StoreResolver {
  /** A state store for `url` (undefined: the default), not yet connected. */
  store(url: string | undefined): Promise<StateStore>;
  /** Throws `ValidationError` when `url` names no store this package can open (checked at construction). */
  checkUrl(url: string): void;
}

let installed: StoreResolver | undefined;

/** Called once by the package entry (`src/connect.ts`). */
export function installStoreResolver(resolver: StoreResolver): void {
  installed = resolver;
}

/** The installed resolver; throws when the state manager is used without the package entry. */
export function storeResolver(): StoreResolver {
  if (installed === undefined) {
    throw new ConcordError(
      'backends_not_loaded',
      "a store URL (and the default memory backend) is resolved by the package entry: import from 'concord-agents', or pass a StateStore instance",
    );
  }
  return installed;
}
