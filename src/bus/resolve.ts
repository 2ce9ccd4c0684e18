import { ConcordError } from '../errors.js';
import type { Transport } from './transport.js';

/**
 * How the bus turns a transport URL into a transport without importing any backend: the package
 * entry (`src/connect.ts`) installs the resolver, and `MessageBus` asks for it only when given a
 * URL or nothing (the default, `memory://`). Data flows one way: entry → connect → backends → ports.
 */
export type TransportResolver = (url: string | undefined) => Promise<Transport>;

let installed: TransportResolver | undefined;

/** Called once by the package entry (`src/connect.ts`), or by a test that wraps transports. */
export function installTransportResolver(resolver: TransportResolver): void {
  installed = resolver;
}

/** A transport for `url` (undefined: the default), not yet connected. */
export function resolveTransportUrl(url: string | undefined): Promise<Transport> {
  if (installed === undefined) {
    return Promise.reject(
      new ConcordError(
        'backends_not_loaded',
        "a transport URL (and the default memory backend) is resolved by the package entry: import from 'concord-agents', or pass a Transport instance",
      ),
    );
  }
  return installed(url);
}
