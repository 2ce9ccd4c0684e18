import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { refreshTracing } from '../../src/observability/tracing.js';

/**
 * Registers an OpenTelemetry SDK for this test file (vitest runs each file in its own module
 * graph): a tracer provider exporting to memory, and a context manager so spans nest across
 * `await`. Returns the exporter; `reset()` it between tests.
 */
export function registerSdk(): { exporter: InMemorySpanExporter; provider: TracerProvider } {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  refreshTracing();
  return { exporter, provider };
}

/** A finished span in a form that is easy to assert on (and to send between processes as JSON). */
export interface SpanRecord {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  attributes: Record<string, unknown>;
  links: Array<{ traceId: string; spanId: string }>;
  status: { code: number; message?: string };
  events: string[];
}

export function spanRecord(s: ReadableSpan): SpanRecord {
  return {
    name: s.name,
    kind: s.kind,
    traceId: s.spanContext().traceId,
    spanId: s.spanContext().spanId,
    parentSpanId: s.parentSpanContext?.spanId,
    attributes: { ...s.attributes },
    links: s.links.map((l) => ({ traceId: l.context.traceId, spanId: l.context.spanId })),
    status: { code: s.status.code, ...(s.status.message !== undefined ? { message: s.status.message } : {}) },
    events: s.events.map((e) => e.name),
  };
}

export function finished(exporter: InMemorySpanExporter): SpanRecord[] {
  return exporter.getFinishedSpans().map(spanRecord);
}

/** The one span named `name` (fails the test when there are none or several). */
export function only(spans: SpanRecord[], name: string, where: (s: SpanRecord) => boolean = () => true): SpanRecord {
  const found = spans.filter((s) => s.name === name && where(s));
  if (found.length !== 1) throw new Error(`expected one span \`${name}\`, got ${found.length}: ${spans.map((s) => s.name).join(', ')}`);
  return found[0] as SpanRecord;
}

/** Waits until `check` holds, up to `ms`. */
export async function until(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
