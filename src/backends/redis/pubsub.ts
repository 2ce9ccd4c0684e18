import type { Redis } from 'ioredis';
import { ClosedError } from '../../errors.js';
import { decodeMessage, type Message } from '../../message.js';
import type { Scripts } from './commands.js';
import { asTransportError, connectClient, createClient, type RedisConfig } from './connection.js';

type Handler = (message: Message) => void;

/**
 * The subscribing side of the transport: one subscriber connection, made on first use, and the
 * handlers per topic. A topic's channel is `{prefix}topic:<topic>`; `'*'` listens on the pattern
 * `{prefix}topic:*`, so one PUBLISH on a message type's channel (`publish`, or an enqueue entry
 * with `publish: true`) reaches both. A `'*'` subscription also subscribes to the channel
 * `{prefix}all-topics`, on which nothing is published: it is how an enqueue knows somebody in
 * this namespace listens to every topic (see scripts/enqueue-2.lua).
 */
export class Subscriptions {
  readonly #config: RedisConfig;
  readonly #scripts: Scripts;
  readonly #connect: () => Promise<void>;
  readonly #handlers = new Map<string, Set<Handler>>();
  #sub: Redis | undefined;
  #connecting: Promise<Redis> | undefined;
  #closed = false;

  constructor(config: RedisConfig, scripts: Scripts, connect: () => Promise<void>) {
    this.#config = config;
    this.#scripts = scripts;
    this.#connect = connect;
  }

  /** Subscribes `handler` to `topic`; resolves once Redis confirmed it. The returned function ends it. */
  async subscribe(topic: string, handler: Handler): Promise<() => Promise<void>> {
    const sub = await this.#subscriber();
    let handlers = this.#handlers.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(topic, handlers);
    }
    const first = handlers.size === 0;
    // Wrap so the same function may be subscribed twice and removed once.
    const entry: Handler = (message) => handler(message);
    handlers.add(entry);
    if (first) {
      try {
        if (topic === '*') {
          await sub.subscribe(this.#scripts.allTopicsChannel);
          await sub.psubscribe(this.#scripts.channel('*'));
        } else await sub.subscribe(this.#scripts.channel(topic));
      } catch (err) {
        handlers.delete(entry);
        throw asTransportError(this.#config, 'subscribe', err);
      }
    }
    let active = true;
    return async () => {
      if (!active) return;
      active = false;
      const set = this.#handlers.get(topic);
      if (!set) return;
      set.delete(entry);
      if (set.size > 0) return;
      this.#handlers.delete(topic);
      if (this.#closed) return;
      try {
        if (topic === '*') {
          await sub.punsubscribe(this.#scripts.channel('*'));
          await sub.unsubscribe(this.#scripts.allTopicsChannel);
        } else await sub.unsubscribe(this.#scripts.channel(topic));
      } catch {
        // The connection is gone: nothing left to unsubscribe from.
      }
    };
  }

  #subscriber(): Promise<Redis> {
    if (this.#closed) return Promise.reject(new ClosedError('redis transport'));
    this.#connecting ??= (async () => {
      await this.#connect();
      const sub = createClient(this.#config, 'sub');
      sub.on('message', (channel: string, data: string) => {
        if (channel !== this.#scripts.allTopicsChannel) this.#dispatch(this.#handlers.get(this.#scripts.topicOf(channel)), data);
      });
      sub.on('pmessage', (_pattern: string, _channel: string, data: string) => this.#dispatch(this.#handlers.get('*'), data));
      this.#sub = sub;
      await connectClient(sub, this.#config);
      return sub;
    })().catch((err: unknown) => {
      this.#connecting = undefined;
      throw err;
    });
    return this.#connecting;
  }

  #dispatch(handlers: Set<Handler> | undefined, data: string): void {
    if (!handlers || handlers.size === 0) return;
    let message: Message;
    try {
      message = decodeMessage(data);
    } catch {
      return; // Someone published garbage on our channel: not a message, nothing to deliver.
    }
    for (const handler of handlers) {
      try {
        handler(message);
      } catch {
        // A subscriber's failure is the bus's to log; it never blocks the others.
      }
    }
  }

  close(): void {
    this.#closed = true;
    this.#handlers.clear();
    this.#sub?.disconnect();
  }
}
