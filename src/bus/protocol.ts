import { ValidationError } from '../errors.js';
import { MessageType, type Message } from '../message.js';
import type { MessageBus } from './bus.js';

/**
 * The three conversation shapes agents use most, as one-liners over a {@link MessageBus}.
 *
 * @example
 * const summary = await CommunicationProtocol.requestResponse(bus, 'planner', 'writer', { task: 'summarise' }, { timeout: 5_000 });
 * await CommunicationProtocol.broadcast(bus, 'planner', ['writer', 'critic'], { command: 'pause' });
 * await CommunicationProtocol.publishSubscribe(bus, 'progress', { stage: 'draft', done: 0.5 });
 */
export class CommunicationProtocol {
  private constructor() {}

  /**
   * Sends `request` as a TASK from `sender` to `recipient` and resolves with the reply's payload.
   *
   * @throws RemoteError when the recipient answers with an ERROR.
   * @throws RequestTimeoutError when no reply comes within `timeout`.
   * @throws RecipientNotFoundError when no agent is registered as `recipient`.
   */
  static async requestResponse<R = Record<string, unknown>>(
    bus: MessageBus,
    sender: string,
    recipient: string,
    request: Record<string, unknown> | unknown[],
    options: { timeout?: number; correlationId?: string } = {},
  ): Promise<R> {
    const reply = await bus.request({ sender, recipient, payload: request as Record<string, unknown>, ...options });
    return reply.payload as R;
  }

  /**
   * Sends `data` as a CONTROL message from `sender` to each of `recipients` in one batch.
   * Resolves with the messages in `recipients` order.
   *
   * @throws RecipientNotFoundError for the first unknown recipient, after every known one got its message.
   */
  static async broadcast(
    bus: MessageBus,
    sender: string,
    recipients: readonly string[],
    data: Record<string, unknown> | unknown[],
    options: { priority?: number; correlationId?: string } = {},
  ): Promise<Message[]> {
    if (!Array.isArray(recipients)) {
      throw new ValidationError(`broadcast needs an array of recipients, got ${typeof recipients}`, { field: 'recipients' });
    }
    return bus.sendBatch(
      recipients.map((recipient) => ({
        sender,
        recipient,
        type: MessageType.CONTROL,
        payload: data as Record<string, unknown>,
        ...options,
      })),
    );
  }

  /**
   * Publishes `data` as a STATUS message on `topic`: every subscriber of `topic` (and of `'*'`)
   * on every bus sharing the transport gets it. `sender` defaults to `'concord'`.
   */
  static async publishSubscribe(
    bus: MessageBus,
    topic: string,
    data: Record<string, unknown> | unknown[],
    options: { sender?: string; correlationId?: string } = {},
  ): Promise<Message> {
    const { sender = 'concord', ...rest } = options;
    return bus.publish({ type: MessageType.STATUS, sender, topic, payload: data as Record<string, unknown>, ...rest });
  }
}
