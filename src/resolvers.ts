import { ConcordError } from './errors.js';
import type { Transport } from './bus/transport.js';
import type { StateStore } from './state/store.js';

/**
 * How the core turns a backend URL into a backend, without importing any backend: the package
 * entry installs the resolvers of `connect.ts` (one parser per scheme, drivers loaded only when
 * their URL is used), and `MessageBus` / `StateManager` ask for them only when given a URL or
 * nothing (the default: memory). Data flows one way: entry → connect → backends → core ports.
 */
export interface BackendResolvers {
  /** A transport for `url` (undefined: the default, `memory://`); not yet connected. */
  transport(url: string | undefined): Promise<Transport>;
  /** A state store for `url` (undefined: the default, `memory://`); not yet connected. */
  store(url: string | undefined): Promise<StateStore>;
  /** Throws `ValidationError` when `url` names no store this package can open. */
  checkStoreUrl(url: string): void;
}

let installed: BackendResolvers | undefined;

/** Called once by the package entry (`src/connect.ts`). */
export function installBackendResolvers(resolvers: BackendResolvers): void {
  installed = resolvers;
}

/** The installed resolvers; throws when a core module is used without the package entry. */
export function backendResolvers(): BackendResolvers {
  if (installed === undefined) {
    throw new ConcordError(
      'backends_not_loaded',
      "backend URLs (and the default memory backend) are resolved by the package entry: import from 'concord-agents', " +
        'or pass a Transport / StateStore instance',
    );
  }
  return installed;
}
