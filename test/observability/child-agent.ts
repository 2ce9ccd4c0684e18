/**
 * The other process of the cross-process trace test: registers its own OpenTelemetry SDK, whose
 * exporter writes every finished span as a `SPAN {json}` line on stdout for the parent to read,
 * then serves agent `writer` on the Redis bus given in argv[2]. Its handler writes a document
 * (state on the same Redis namespace) and sends a STATUS to `watcher` before it replies. It exits
 * when its stdin closes.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { refreshTracing } from '../../src/observability/tracing.js';
import { defineAgent, MessageBus, MessageType, StateManager } from '../../src/index.js';
import { spanRecord } from './otel.js';

const url = process.argv[2];
if (url === undefined) throw new Error('usage: child-agent.ts <redis bus url>');

const exporter = {
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    for (const s of spans) process.stdout.write(`SPAN ${JSON.stringify(spanRecord(s))}\n`);
    done({ code: 0 });
  },
  shutdown: async () => {},
  forceFlush: async () => {},
};
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);
refreshTracing();

const state = new StateManager({ store: url });
const bus = new MessageBus({ transport: url, state });
bus.registerAgent(
  'writer',
  defineAgent({
    name: 'writer',
    async handleMessage(message, ctx) {
      const { documentId, content } = message.payload as { documentId: string; content: string };
      const doc = await state.createDocumentState({ documentId, topic: 'traced', content, actor: 'writer' });
      await ctx.send({ recipient: 'watcher', type: MessageType.STATUS, payload: { documentId, version: doc.version } });
      return { documentId, version: doc.version, pid: process.pid };
    },
  }),
);
await bus.ready();
process.stdout.write('READY\n');

process.stdin.resume();
process.stdin.on('end', () => {
  void (async () => {
    await bus.close();
    await state.close();
    await provider.shutdown();
    process.exit(0);
  })();
});
