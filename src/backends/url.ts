import { ValidationError, redactUrl } from '../errors.js';

export { redactUrl };

/** A parsed backend URL: `memory://`, `sqlite:./path.db`, `redis://host:6379/0?namespace=x`, ... (`url` as given: show it only through `redactUrl`) */
export interface BackendUrl {
  scheme: string;
  url: string;
  namespace: string | undefined;
  params: URLSearchParams;
}

const NAMESPACE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The scheme of `url` (lower case), when it is one of `accepted`'s; else a `ValidationError` listing them. */
export function schemeOf(url: string, accepted: readonly string[]): string {
  if (typeof url !== 'string' || url.length === 0) {
    throw new ValidationError(`backend URL must be a non-empty string such as ${accepted.map((s) => `\`${s}\``).join(', ')}`);
  }
  const m = /^([a-z][a-z0-9+.-]*):/i.exec(url);
  const scheme = m?.[1]?.toLowerCase();
  if (!scheme || !accepted.some((a) => a.startsWith(`${scheme}:`))) {
    throw new ValidationError(
      `unsupported backend URL \`${redactUrl(url)}\`: expected one of ${accepted.map((s) => `\`${s}\``).join(', ')}`,
    );
  }
  return scheme;
}

/** `url` taken apart, after `schemeOf` checked its scheme; the namespace checked. */
export function parseBackendUrl(url: string, accepted: readonly string[]): BackendUrl {
  const scheme = schemeOf(url, accepted);
  const q = url.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
  const namespace = params.get('namespace') ?? undefined;
  if (namespace !== undefined && !NAMESPACE.test(namespace)) {
    throw new ValidationError(`namespace must be 1..64 letters, digits, '.', '_' or '-', got \`${namespace}\``);
  }
  return { scheme, url, namespace, params };
}
