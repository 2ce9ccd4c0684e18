/**
 * Every error Concord throws on purpose. Each has a stable `code` a caller can switch on,
 * `name` set to the class name, and the fields a caller needs to act on it.
 *
 * @example
 * try { await state.updateDocumentContent({ documentId, content, actor, expectedVersion: 3 }) }
 * catch (err) { if (err instanceof StateConflictError) console.log(err.actualVersion) }
 */
export class ConcordError extends Error {
  /** Stable machine-readable identifier, e.g. `'state_conflict'`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Input broke a rule; nothing was written or enqueued. `field` names what was wrong when known. */
export class ValidationError extends ConcordError {
  readonly field: string | undefined;
  constructor(message: string, options?: { field?: string; cause?: unknown }) {
    super('validation', message, options);
    this.field = options?.field;
  }
}

/**
 * `send` named a recipient no agent is registered as (the message is then in the dead-letter
 * queue; `messageId` names it), or `receive` a name no agent is registered as (`messageId` is '').
 */
export class RecipientNotFoundError extends ConcordError {
  readonly recipient: string;
  readonly messageId: string;
  constructor(recipient: string, messageId?: string) {
    super(
      'recipient_not_found',
      messageId === undefined
        ? `no agent is registered as \`${recipient}\`: register it (bus.registerAgent(name)) before receiving from it`
        : `no agent is registered as \`${recipient}\` (message ${messageId} was dead-lettered)`,
    );
    this.recipient = recipient;
    this.messageId = messageId ?? '';
  }
}

/** No reply to a request arrived within its timeout. */
export class RequestTimeoutError extends ConcordError {
  readonly requestId: string;
  readonly recipient: string;
  readonly timeoutMs: number;
  constructor(requestId: string, recipient: string, timeoutMs: number) {
    super('request_timeout', `no reply from \`${recipient}\` to request ${requestId} within ${timeoutMs} ms`);
    this.requestId = requestId;
    this.recipient = recipient;
    this.timeoutMs = timeoutMs;
  }
}

/** The other side answered a request with an ERROR message; `payload` is what it sent. */
export class RemoteError extends ConcordError {
  readonly payload: Record<string, unknown>;
  readonly sender: string;
  readonly requestId: string;
  constructor(sender: string, requestId: string, payload: Record<string, unknown>) {
    const detail = typeof payload['message'] === 'string' ? payload['message'] : JSON.stringify(payload);
    super('remote_error', `\`${sender}\` answered request ${requestId} with an error: ${detail}`);
    this.payload = payload;
    this.sender = sender;
    this.requestId = requestId;
  }
}

/** A region where two edits overlap in a three-way merge. */
export interface MergeConflictRegion {
  /** Lines of the common ancestor. */
  base: string[];
  /** Lines the caller wanted. */
  ours: string[];
  /** Lines currently stored. */
  theirs: string[];
}

/** `expectedVersion` was not the current version (or a merge overlapped). Nothing was written. */
export class StateConflictError extends ConcordError {
  readonly documentId: string;
  readonly expectedVersion: number;
  readonly actualVersion: number;
  /** The current document, so the caller can rebase without another read. */
  readonly current: unknown;
  /** Overlapping regions when a `merge: true` write could not be merged. */
  readonly conflicts: MergeConflictRegion[];
  constructor(
    documentId: string,
    expectedVersion: number,
    actualVersion: number,
    options?: { current?: unknown; conflicts?: MergeConflictRegion[]; message?: string },
  ) {
    super(
      'state_conflict',
      options?.message ?? `document \`${documentId}\` is at version ${actualVersion}, expected version ${expectedVersion}`,
    );
    this.documentId = documentId;
    this.expectedVersion = expectedVersion;
    this.actualVersion = actualVersion;
    this.current = options?.current;
    this.conflicts = options?.conflicts ?? [];
  }
}

export class DocumentNotFoundError extends ConcordError {
  readonly documentId: string;
  constructor(documentId: string) {
    super('document_not_found', `no document \`${documentId}\``);
    this.documentId = documentId;
  }
}

/** A version was asked for that history compaction removed (or that never existed). */
export class VersionNotFoundError extends ConcordError {
  readonly documentId: string;
  readonly version: number;
  readonly oldestKept: number | null;
  readonly latest: number | null;
  constructor(documentId: string, version: number, oldestKept: number | null, latest: number | null) {
    super(
      'version_not_found',
      `document \`${documentId}\` has no version ${version}` +
        (oldestKept !== null && latest !== null ? `: versions ${oldestKept}..${latest} are kept` : ''),
    );
    this.documentId = documentId;
    this.version = version;
    this.oldestKept = oldestKept;
    this.latest = latest;
  }
}

export class DocumentExistsError extends ConcordError {
  readonly documentId: string;
  constructor(documentId: string) {
    super('document_exists', `document \`${documentId}\` already exists`);
    this.documentId = documentId;
  }
}

export class WorkflowNotFoundError extends ConcordError {
  readonly workflowId: string;
  constructor(workflowId: string) {
    super('workflow_not_found', `no workflow \`${workflowId}\``);
    this.workflowId = workflowId;
  }
}

export class WorkflowExistsError extends ConcordError {
  readonly workflowId: string;
  constructor(workflowId: string) {
    super('workflow_exists', `workflow \`${workflowId}\` already exists`);
    this.workflowId = workflowId;
  }
}

/** A snapshot failed shape or checksum validation. */
export class SnapshotError extends ConcordError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('snapshot_invalid', message, options);
  }
}

/** A backend is unreachable or failed. `url` says which (credentials removed). */
export class TransportError extends ConcordError {
  readonly url: string;
  constructor(url: string, message: string, options?: { cause?: unknown }) {
    super('transport_unavailable', `${message} (${redactUrl(url)})`, options);
    this.url = redactUrl(url);
  }
}

/** A lock could not be taken within the wait allowed. */
export class LockTimeoutError extends ConcordError {
  readonly key: string;
  readonly waitedMs: number;
  constructor(key: string, waitedMs: number) {
    super('lock_timeout', `lock \`${key}\` not acquired within ${waitedMs} ms`);
    this.key = key;
    this.waitedMs = waitedMs;
  }
}

/**
 * Another orchestrator holds the workflow's run lease: two processes must never run one workflow
 * at once. A run that crashed lets its lease run out, so waiting `ttlMs` is always enough.
 */
export class WorkflowBusyError extends ConcordError {
  readonly workflowId: string;
  readonly waitedMs: number;
  constructor(workflowId: string, waitedMs: number) {
    super(
      'workflow_busy',
      `workflow \`${workflowId}\` is being run by another process (its lease was not released within ${waitedMs} ms); wait for it to finish or stop it first`,
    );
    this.workflowId = workflowId;
    this.waitedMs = waitedMs;
  }
}

/** A pattern ran past its `timeout`. */
export class PatternTimeoutError extends ConcordError {
  /** `sequential`, `parallel`, `forkJoin` or `agentStep`. */
  readonly pattern: string;
  readonly timeoutMs: number;
  constructor(pattern: string, timeoutMs: number) {
    super('pattern_timeout', `${pattern} did not finish within its timeout of ${timeoutMs} ms`);
    this.pattern = pattern;
    this.timeoutMs = timeoutMs;
  }
}

/** The bus or manager was closed; no new work is accepted. */
export class ClosedError extends ConcordError {
  constructor(what: string) {
    super('closed', `${what} is closed`);
  }
}

/** Query parameters whose values are credentials (`?password=`, `?token=`, `?apiKey=`, ...). */
const SECRET_PARAM = /^(?:[a-z0-9_-]*?(?:pass(?:word)?|pwd|secret|token|auth|key|credentials?))$/i;

/**
 * A URL made fit to show in errors, logs and CLI output: the password of its userinfo becomes
 * `***`, and so do the values of query parameters that name a credential (`password`, `token`,
 * `apiKey`, ...). Works on the text, so a URL that does not
 * parse (port 99999, an unknown scheme, a stray character) is redacted the same way, and the rest
 * is shown exactly as given. Every place Concord shows a URL goes through here.
 *
 * @example
 * redactUrl('rediss://default:s3cret@cache.example.com:6380/0') // 'rediss://default:***@cache.example.com:6380/0'
 * redactUrl('redis://:s3cret@host:99999')                       // 'redis://:***@host:99999'
 */
export function redactUrl(url: string): string {
  if (typeof url !== 'string') return String(url);
  let out = url;
  const start = /^[a-z][a-z0-9+.-]*:\/\//i.exec(out)?.[0].length ?? (/^[^/?#@]*@/.test(out) ? 0 : -1);
  if (start >= 0) {
    // The userinfo ends at the last '@' (a password may hold an unescaped '@', '/' or '?'):
    // showing too little of an odd URL is better than showing a secret.
    const at = out.lastIndexOf('@');
    if (at >= start) {
      const userinfo = out.slice(start, at);
      const colon = userinfo.indexOf(':');
      // A user name alone is no secret (Concord passes it as the name, not as a password).
      if (colon >= 0) out = `${out.slice(0, start)}${userinfo.slice(0, colon)}:***${out.slice(at)}`;
    }
  }
  const q = out.indexOf('?');
  if (q >= 0) {
    out =
      out.slice(0, q + 1) +
      out
        .slice(q + 1)
        .split('&')
        .map((pair) => {
          const eq = pair.indexOf('=');
          if (eq < 0) return pair;
          let name = pair.slice(0, eq);
          try {
            name = decodeURIComponent(name);
          } catch {
            // Not percent-encoded properly: judge the name as written.
          }
          return SECRET_PARAM.test(name) ? `${pair.slice(0, eq)}=***` : pair;
        })
        .join('&');
  }
  return out;
}
