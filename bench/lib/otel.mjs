// `--otel`: registers an OpenTelemetry SDK before Concord is loaded, as an application that traces
// would: a tracer provider with a batch processor, an exporter that drops everything (so the
// figure is the cost of making spans, not of shipping them), and the async-hooks context manager.
// The SDK packages are dev dependencies; a run without `--otel` never loads them.

/** Registers the SDK when `args.otel` is set; resolves with a function that shuts it down. */
export async function maybeRegisterOtel(args) {
  if (!args.otel) return async () => {};
  const { context, trace } = await import('@opentelemetry/api');
  const { BatchSpanProcessor, TracerProvider } = await import('@opentelemetry/sdk-trace');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  let exported = 0;
  const exporter = {
    export(spans, done) {
      exported += spans.length;
      done({ code: 0 });
    },
    shutdown: async () => {},
    forceFlush: async () => {},
  };
  const provider = new TracerProvider({
    spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 65_536, maxExportBatchSize: 4096 })],
  });
  // `--otel no-context`: no context manager, to tell its cost (AsyncLocalStorage) from the spans'.
  if (args.otel !== 'no-context') context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return async () => {
    await provider.shutdown();
    return exported;
  };
}
