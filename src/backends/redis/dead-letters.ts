import type { DeadLetter, DeadLetterClaim } from '../../bus/transport.js';
import { ValidationError } from '../../errors.js';
import { newId } from '../../message.js';
import { decodeDeadLetter } from './codec.js';
import type { Scripts } from './commands.js';
import type { CommandPipeline } from './pipeline.js';

/**
 * The dead-letter queue of a namespace as an operator reaches it: list, take, the claim and
 * settle a redrive goes through, purge. Storing a letter stays with the transport (it may remove a
 * leased message in the same script).
 */
export class RedisDeadLetters {
  readonly #pipeline: CommandPipeline;
  readonly #scripts: Scripts;

  constructor(pipeline: CommandPipeline, scripts: Scripts) {
    this.#pipeline = pipeline;
    this.#scripts = scripts;
  }

  /** Dead letters, oldest first; an unreadable one (damaged in Redis) is left out. */
  async list(options?: { limit?: number }): Promise<DeadLetter[]> {
    const limit = options?.limit === undefined ? -1 : Math.max(0, Math.floor(options.limit));
    if (limit === 0) return [];
    const raw = (await this.#pipeline.run(this.#scripts.listDeadLetters(limit))) as string[];
    const out: DeadLetter[] = [];
    for (const json of raw) {
      const letter = decodeDeadLetter(json);
      if (letter) out.push(letter);
    }
    return out;
  }

  /** Removes and returns the dead letter of `messageId`, or null. */
  async take(messageId: string): Promise<DeadLetter | null> {
    const raw = await this.#pipeline.run(this.#scripts.takeDeadLetter(messageId));
    return typeof raw === 'string' ? decodeDeadLetter(raw) : null;
  }

  /** See {@link Transport.claimDeadLetter}. */
  async claim(messageId: string, claimMs: number): Promise<DeadLetterClaim | 'claimed' | null> {
    const reply = await this.#pipeline.run(this.#scripts.claimDeadLetter(messageId, claimMs, newId()));
    if (!Array.isArray(reply)) return null;
    if (reply.length === 1) return 'claimed';
    const letter = decodeDeadLetter(String(reply[0]));
    const token = String(reply[1]);
    if (letter === null) {
      // Tampered with in Redis: not something the bus can redrive; leave it as it is.
      await this.settle(messageId, token, false);
      throw new ValidationError(`dead letter ${messageId} is not readable (damaged in Redis); it is left in place`, { field: 'id' });
    }
    return { letter, token };
  }

  /** See {@link Transport.settleDeadLetter}. */
  async settle(messageId: string, token: string, remove: boolean): Promise<boolean> {
    return (await this.#pipeline.run(this.#scripts.settleDeadLetter(messageId, token, remove))) === 1;
  }

  /** Removes every dead letter; returns how many. */
  async purge(): Promise<number> {
    return Number(await this.#pipeline.run(this.#scripts.purgeDeadLetters()));
  }
}
