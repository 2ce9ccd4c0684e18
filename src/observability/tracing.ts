/**
 * OpenTelemetry traces through `@opentelemetry/api` only: a no-op until the application registers
 * an SDK (a tracer provider, and a context manager for spans to nest across `await`). Spans follow
 * the messaging semantic conventions: a PRODUCER span per send, publish, request and reply, whose
 * context travels in the message's W3C `traceparent` header; a CONSUMER span per delivery handled,
 * parented by that header in whichever process handles it. The header stays on the message
 * through retries, dead letters and redrive, so every attempt joins the trace it was sent in.
 *
 * Hot paths call {@link activeTracer} once per operation: with no SDK registered that is one
 * method call and a comparison, and nothing else is built.
 */
import {
  type Attributes,
  type Context,
  context,
  type Link,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type SpanContext,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import type { Message } from '../message.js';
import type { CommitRequest, CommitResult, StateStore } from '../state/store.js';

/** The instrumentation scope of every Concord span. */
export const TRACER_NAME = 'concord';

/** `messaging.system` of every messaging span. */
export const MESSAGING_SYSTEM = 'concord';

/** What the API's provider delegates to while no SDK is registered. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();
/** Re-read the global registration every this many checks (a provider registered through another copy of the API, or after `trace.disable()`). */
const RECHECK_EVERY = 1024;

/** The global provider as last read, and the same as a proxy when it is one (the API's usual case). */
let watched: TracerProvider = trace.getTracerProvider();
let proxy: ProxyTracerProvider | undefined = watched instanceof ProxyTracerProvider ? watched : undefined;
let checks = 0;
let tracerOf: TracerProvider | undefined;
let tracer: Tracer | undefined;

/**
 * The Concord tracer when an SDK is registered, else undefined. Cheap enough for every message:
 * the global provider is read once (and again every {@link RECHECK_EVERY} calls), and each call
 * only asks it whether it still delegates to nothing.
 */
export function activeTracer(): Tracer | undefined {
  if (++checks === RECHECK_EVERY) refreshTracing();
  const provider = proxy !== undefined ? proxy.getDelegate() : watched;
  if (provider === NOOP_PROVIDER) return undefined;
  if (provider !== tracerOf) {
    tracerOf = provider;
    tracer = provider.getTracer(TRACER_NAME);
  }
  return tracer;
}

/** Re-reads the registered provider now (tests and applications that swap providers call it after registering). */
export function refreshTracing(): void {
  checks = 0;
  watched = trace.getTracerProvider();
  proxy = watched instanceof ProxyTracerProvider ? watched : undefined;
}

// ---------------------------------------------------------------- W3C trace context

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The span context a `traceparent` names (remote), or undefined when it is absent or malformed. */
export function spanContextOf(traceparent: string | undefined): SpanContext | undefined {
  if (traceparent === undefined) return undefined;
  const m = TRACEPARENT.exec(traceparent);
  if (m === null) return undefined;
  const sc: SpanContext = {
    traceId: m[1] as string,
    spanId: m[2] as string,
    traceFlags: Number.parseInt(m[3] as string, 16) & 1,
    isRemote: true,
  };
  return trace.isSpanContextValid(sc) ? sc : undefined;
}

/** The `traceparent` header of a span context. */
export function traceparentOf(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}`;
}

/** The context a message was created in (its `traceparent`), as a parent context. */
export function messageContext(message: Message): Context | undefined {
  const sc = spanContextOf(message.headers['traceparent']);
  return sc === undefined ? undefined : trace.setSpanContext(ROOT_CONTEXT, sc);
}

// ---------------------------------------------------------------- messaging spans

/** What a PRODUCER span did: the `messaging.operation.name`. */
export type ProducerOperation = 'send' | 'publish' | 'request' | 'reply' | 'redrive';

function messageAttributes(message: Message, operationType: string, operationName: string, destination: string): Attributes {
  const attributes: Attributes = {
    'messaging.system': MESSAGING_SYSTEM,
    'messaging.operation.type': operationType,
    'messaging.operation.name': operationName,
    'messaging.destination.name': destination,
    'messaging.message.id': message.id,
    'messaging.concord.message.type': message.type,
    'messaging.concord.sender': message.sender,
    'messaging.concord.priority': message.priority,
    'messaging.concord.attempt': message.attempt,
  };
  if (message.correlationId !== undefined) attributes['messaging.message.conversation_id'] = message.correlationId;
  return attributes;
}

/**
 * Starts the PRODUCER span of sending `message` to `queue` (or publishing it on a topic) and writes
 * the span's context into the message's `traceparent`, so the consumer's span becomes its child.
 * Its parent is `parent` when the bus knows it (the delivery a handler is handling, or the
 * `traceparent` the caller put on the message: {@link messageContext}), else the active span,
 * else none. The span is named after the recipient (a reply's queue may be a requester's inbox).
 */
export function startProducerSpan(t: Tracer, message: Message, operation: ProducerOperation, queue: string, parent?: Context): Span {
  const span = t.startSpan(
    `${operation} ${message.recipient || queue}`,
    { kind: SpanKind.PRODUCER, attributes: messageAttributes(message, 'send', operation, queue) },
    parent ?? context.active(),
  );
  if (queue !== message.recipient && message.recipient !== '') span.setAttribute('messaging.destination.temporary', true);
  const sc = span.spanContext();
  if (trace.isSpanContextValid(sc)) message.headers['traceparent'] = traceparentOf(sc);
  return span;
}

/**
 * The PRODUCER span of redriving a dead letter to `queue`: a child of the context the message was
 * first sent in. The message keeps its `traceparent`, so its processing stays in that trace.
 */
export function redriveSpan(t: Tracer, message: Message, queue: string): Span {
  const span = t.startSpan(
    `redrive ${queue}`,
    { kind: SpanKind.PRODUCER, attributes: messageAttributes(message, 'send', 'redrive', queue) },
    messageContext(message) ?? ROOT_CONTEXT,
  );
  span.end();
  return span;
}

/**
 * The span of settling a message without a handler's span around it (dead-lettered because it
 * expired or ran out of attempts): a child of the context it was sent in.
 */
export function settleSpan(t: Tracer, message: Message, queue: string, outcome: string, reason: string): void {
  const attributes = messageAttributes(message, 'settle', outcome, queue);
  attributes['messaging.concord.dead_letter.reason'] = reason;
  t.startSpan(`settle ${queue}`, { kind: SpanKind.CLIENT, attributes }, messageContext(message) ?? ROOT_CONTEXT).end();
}

/**
 * Starts the CONSUMER span of handling (`process`) or pulling (`receive`) one delivery of
 * `message` from `queue`: a child of the context the message was sent in, whichever process
 * sent it. Run the handler in {@link spanContext}`(span)` so what it does nests under it.
 */
export function startConsumerSpan(t: Tracer, message: Message, queue: string, operation: 'process' | 'receive'): Span {
  return t.startSpan(
    `${operation} ${queue}`,
    { kind: SpanKind.CONSUMER, attributes: messageAttributes(message, operation, operation, queue) },
    messageContext(message) ?? ROOT_CONTEXT,
  );
}

/**
 * The span of leasing a batch of messages from `queue`: it links to each message's creation
 * context instead of parenting (the batch has many parents), per the messaging conventions.
 */
export function leaseSpan(t: Tracer, queue: string, messages: readonly Message[], startTime?: number): Span {
  const links: Link[] = [];
  for (const m of messages) {
    const sc = spanContextOf(m.headers['traceparent']);
    if (sc !== undefined) links.push({ context: sc });
  }
  const span = t.startSpan(
    `receive ${queue}`,
    {
      kind: SpanKind.CLIENT,
      ...(startTime !== undefined ? { startTime } : {}),
      links,
      attributes: {
        'messaging.system': MESSAGING_SYSTEM,
        'messaging.operation.type': 'receive',
        'messaging.operation.name': 'lease',
        'messaging.destination.name': queue,
        'messaging.batch.message_count': messages.length,
      },
    },
    ROOT_CONTEXT,
  );
  span.end();
  return span;
}

/** The active context with `span` as its current span: run work in it to nest its spans under `span`. */
export function spanContext(span: Span): Context {
  return trace.setSpan(context.active(), span);
}

/** Runs `fn` with `span` as the current span (a no-op without a context manager). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

// ---------------------------------------------------------------- errors and ends

/** `error.type` of an error: its stable `code` (Concord errors, Node system errors), else its class name. */
export function errorType(error: unknown): string {
  if (error !== null && typeof error === 'object') {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    const name = (error as { name?: unknown }).name;
    if (typeof name === 'string' && name !== '') return name;
  }
  return '_OTHER';
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  const message = error !== null && typeof error === 'object' ? (error as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : String(error);
}

/** Records `error` on `span`: an exception event, status ERROR and `error.type`. */
export function recordError(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const message = messageOf(error);
  span.recordException(error instanceof Error ? error : { name: errorType(error), message });
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.setAttribute('error.type', errorType(error));
}

/** Ends `span`, recording `error` when given. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) recordError(span, error);
  span.end();
}

// ---------------------------------------------------------------- state and workflows

/**
 * `store.commitDocument(request)` in a `state.commit` span when tracing (the document, the version
 * it would become, the action, and whether it committed or met a conflict); the plain call otherwise.
 */
export function tracedCommit(store: StateStore, request: CommitRequest): Promise<CommitResult> {
  const t = activeTracer();
  if (t === undefined) return store.commitDocument(request);
  const { document, change } = request;
  const span = t.startSpan('state.commit', {
    kind: SpanKind.INTERNAL,
    attributes: {
      'concord.document.id': document.documentId,
      'concord.document.version': document.version,
      'concord.state.action': change.action,
      'concord.state.actor': change.actor,
      'concord.state.expected_version': request.expectedVersion ?? 0,
      'concord.state.merge': change.action === 'merge',
    },
  });
  return context
    .with(trace.setSpan(context.active(), span), () => store.commitDocument(request))
    .then(
      (result) => {
        span.setAttribute('concord.state.outcome', result.ok ? 'committed' : result.reason);
        if (!result.ok && result.current !== undefined && result.current !== null) {
          span.setAttribute('concord.state.actual_version', result.current.version);
        }
        span.end();
        return result;
      },
      (err: unknown) => {
        endSpan(span, err);
        throw err;
      },
    );
}

/** Starts an internal span (a workflow, one of its rounds or stages) under `parent` or the active context. */
export function startInternalSpan(name: string, attributes: Attributes, parent?: Context): Span | undefined {
  const t = activeTracer();
  if (t === undefined) return undefined;
  return t.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent ?? context.active());
}

/**
 * A write refused before it reached the store (its expected version is not the current one): a
 * `state.commit` span with outcome `conflict` when tracing, so the conflict shows in the trace.
 * Returns `error` for the caller to throw.
 */
export function tracedConflict<
  E extends Error & { documentId: string; expectedVersion: number; actualVersion: number; conflicts: unknown[] },
>(error: E): E {
  const t = activeTracer();
  if (t === undefined) return error;
  const span = t.startSpan('state.commit', {
    kind: SpanKind.INTERNAL,
    attributes: {
      'concord.document.id': error.documentId,
      'concord.document.version': error.expectedVersion + 1,
      'concord.state.expected_version': error.expectedVersion,
      'concord.state.actual_version': error.actualVersion,
      'concord.state.outcome': 'conflict',
      'concord.state.merge': error.conflicts.length > 0,
      'concord.state.merge_conflicts': error.conflicts.length,
    },
  });
  endSpan(span, error);
  return error;
}

/** The context a `traceparent` names, as a parent (undefined when absent or malformed). */
export function traceparentContext(traceparent: string | undefined): Context | undefined {
  const sc = spanContextOf(traceparent);
  return sc === undefined ? undefined : trace.setSpanContext(ROOT_CONTEXT, sc);
}

/**
 * Runs `fn` as the current span `span` (when tracing) and ends the span with its outcome:
 * `onResult` may add attributes from the result; a throw is recorded as the span's error.
 */
export async function traced<T>(span: Span | undefined, fn: () => Promise<T>, onResult?: (span: Span, result: T) => void): Promise<T> {
  if (span === undefined) return fn();
  try {
    const result = await withSpan(span, fn);
    onResult?.(span, result);
    span.end();
    return result;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

/** What a workflow run reports about its outcome on its span. */
export function workflowOutcome(
  span: Span,
  outcome: {
    status: string;
    iterations: number;
    accepted: boolean;
    documentVersion: number;
    error: { code: string; message: string } | null;
  },
): void {
  span.setAttributes({
    'concord.workflow.status': outcome.status,
    'concord.workflow.iterations': outcome.iterations,
    'concord.workflow.accepted': outcome.accepted,
    'concord.document.version': outcome.documentVersion,
  });
  if (outcome.error !== null) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.message });
    span.setAttribute('error.type', outcome.error.code);
  }
}

/**
 * The span of a workflow's current revision round (`workflow.round`): opened by the round's first
 * stage, closed by the decision that ends it (revise, accept, stop or fail), so each round's
 * stages nest under it.
 */
export class RoundTrace {
  #span: Span | undefined;
  readonly #workflowId: string;

  constructor(workflowId: string) {
    this.#workflowId = workflowId;
  }

  /** The context to run one of round `iteration`'s stages in (opens the round's span), or undefined when not tracing. */
  stageParent(iteration: number): Context | undefined {
    if (this.#span === undefined) {
      this.#span = startInternalSpan('workflow.round', {
        'concord.workflow.id': this.#workflowId,
        'concord.workflow.iteration': iteration,
      });
      if (this.#span === undefined) return undefined;
    }
    return spanContext(this.#span);
  }

  /** Closes the open round with its decision (and the error that ended it, if any). */
  end(decision: string, attributes: Attributes = {}, error?: unknown): void {
    const span = this.#span;
    if (span === undefined) return;
    this.#span = undefined;
    span.setAttributes(attributes);
    span.setAttribute('concord.workflow.decision', decision);
    endSpan(span, error);
  }
}

/** The `traceparent` of the active span when tracing, else undefined (to pass a span on as a message header). */
export function activeTraceparent(): string | undefined {
  if (activeTracer() === undefined) return undefined;
  const sc = trace.getSpanContext(context.active());
  return sc !== undefined && trace.isSpanContextValid(sc) ? traceparentOf(sc) : undefined;
}

/** What a PRODUCER span of `message` did: a reply (it answers a message), a request (it waits for one), or a send. */
export function producerOperation(message: Message): ProducerOperation {
  const h = message.headers;
  return h['inReplyTo'] !== undefined ? 'reply' : h['replyTo'] !== undefined ? 'request' : 'send';
}

/** `span` as an explicit parent context. */
export function parentOf(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span);
}

/**
 * The parent of a reply to `request` sent outside a handler's span (a pull consumer's
 * `bus.reply`, the ERROR of a request that failed for good): the context the request was sent in.
 */
export function replyParent(request: Message): Context | undefined {
  return trace.getSpan(context.active()) === undefined ? messageContext(request) : undefined;
}
