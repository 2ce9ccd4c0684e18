import type { WorkflowEvent } from '../workflow/types.js';
import { duration, score } from './format.js';

/** Where progress goes: a live line redrawn in place on a TTY, plain lines otherwise. */
export interface ProgressDisplay {
  handle(event: WorkflowEvent): void;
  /** Prints a line of its own (keeps the live line below it). */
  note(line: string): void;
  /**
   * Text a model streams for `agent`, as it arrives: from this process's agents, or forwarded over
   * the bus by an agent process (which says which `model` it is and how many `tokens` the text holds).
   */
  token(agent: string, text: string, from?: TokenSource): void;
  /** Clears the live line and stops redrawing. Idempotent. */
  stop(): void;
}

/** What a forwarded piece of model text says about itself. */
export interface TokenSource {
  /** The model's label (`name@host`), as the agent process reported it (default: this run's model). */
  model?: string;
  /** How many streamed pieces `text` holds (default 1). */
  tokens?: number;
}

export interface ProgressOptions {
  stream: NodeJS.WriteStream;
  /** Messages sent so far (from the bus metrics). */
  messages: () => number;
  /** Rounds at most, for `iteration 2/3`. */
  maxIterations: number;
  /** Force plain lines even on a TTY. */
  plain?: boolean;
  /** The model writing and editing stream from (`name@host`), when there is one. */
  model?: string;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/** Live display on a TTY (unless `plain`, `CI` or `TERM=dumb`), plain lines otherwise. */
export function createProgress(options: ProgressOptions): ProgressDisplay {
  const live = options.stream.isTTY === true && !options.plain && !process.env['CI'] && process.env['TERM'] !== 'dumb';
  return live ? new LiveProgress(options) : new PlainProgress(options);
}

/** A human line for an event, or null for events that only update the live line. */
export function describe(event: WorkflowEvent, maxIterations: number): string | null {
  switch (event.type) {
    case 'lease_wait':
      return `workflow ${event.workflowId} is held by another run; waiting up to ${Math.ceil(event.waitMs / 1000)} s for it to finish or for its lease to run out`;
    case 'workflow_started':
      return `${event.resumed ? 'resuming' : 'starting'} workflow ${event.workflowId} (document ${event.documentId}): ${event.stages.join(' → ')}`;
    case 'stage_started':
      return `stage ${event.stage} → agent ${event.agent} (iteration ${event.iteration}/${maxIterations}${event.attempt > 1 ? `, attempt ${event.attempt}` : ''})`;
    case 'stage_skipped':
      return `stage ${event.stage} already ${event.reason === 'completed' ? 'complete' : 'recorded'}: skipped`;
    case 'stage_retry':
      return `stage ${event.stage} attempt ${event.attempt} failed, retrying: ${event.error}`;
    case 'stage_completed':
      return `stage ${event.stage} done: score ${score(event.score)}${event.version !== null ? `, document version ${event.version}` : ''}`;
    case 'revision':
      return `${event.stage} scored ${score(event.score) === score(event.threshold) ? event.score.toFixed(3) : score(event.score)} < ${score(event.threshold)}: ${event.problems} problem${event.problems === 1 ? '' : 's'} sent back to ${event.to} (iteration ${event.fromIteration + 1}/${maxIterations})`;
    case 'revision_stopped':
      return `no further revision: ${event.reason}`;
    case 'workflow_completed':
      return `workflow ${event.outcome.workflowId} completed after ${event.outcome.iterations} iteration${event.outcome.iterations === 1 ? '' : 's'}`;
    case 'workflow_failed':
      return `workflow ${event.outcome.workflowId} failed: ${event.outcome.error?.message ?? 'unknown error'}`;
  }
}

class PlainProgress implements ProgressDisplay {
  readonly #o: ProgressOptions;
  /** The agent whose model output is being streamed onto the current line, and the model's label. */
  #streaming: { agent: string; model: string } | undefined;
  #tokens = 0;
  constructor(options: ProgressOptions) {
    this.#o = options;
  }
  token(agent: string, text: string, from: TokenSource = {}): void {
    const model = from.model ?? this.#o.model ?? 'model';
    if (this.#streaming?.agent !== agent || this.#streaming.model !== model) {
      this.#endStream();
      this.#streaming = { agent, model };
      this.#o.stream.write(`${agent} ← ${model}: `);
    }
    this.#tokens += from.tokens ?? 1;
    this.#o.stream.write(text);
  }
  #endStream(): void {
    if (this.#streaming === undefined) return;
    const { agent, model } = this.#streaming;
    this.#o.stream.write(`\n${agent} ← ${model}: ${this.#tokens} tokens streamed\n`);
    this.#streaming = undefined;
    this.#tokens = 0;
  }
  handle(event: WorkflowEvent): void {
    this.#endStream();
    let line = describe(event, this.#o.maxIterations);
    if (line && (event.type === 'workflow_completed' || event.type === 'workflow_failed')) line += ` (${this.#o.messages()} messages sent)`;
    if (line) this.#o.stream.write(line + '\n');
  }
  note(line: string): void {
    this.#endStream();
    this.#o.stream.write(line + '\n');
  }
  stop(): void {
    this.#endStream();
  }
}

class LiveProgress implements ProgressDisplay {
  readonly #o: ProgressOptions;
  readonly #started = Date.now();
  #frame = 0;
  #stage = 'starting';
  #iteration = 1;
  #timer: NodeJS.Timeout | undefined;
  #drawn = false;
  /** The tail of what the model is streaming, shown on the live line, and the model's label. */
  #stream = '';
  #model: string;

  constructor(options: ProgressOptions) {
    this.#o = options;
    this.#model = options.model ?? 'model';
    this.#timer = setInterval(() => this.#draw(), 100);
    this.#timer.unref();
  }

  handle(event: WorkflowEvent): void {
    if (event.type === 'stage_started') {
      this.#stream = '';
      this.#stage = `${event.stage} (${event.agent})`;
      this.#iteration = event.iteration;
    } else if (event.type === 'revision') {
      this.#iteration = event.fromIteration + 1;
    }
    // Permanent lines for milestones; the live line carries the rest.
    if (event.type !== 'stage_started') {
      const line = describe(event, this.#o.maxIterations);
      if (line) this.note((event.type === 'stage_completed' ? '✓ ' : event.type === 'workflow_failed' ? '✗ ' : '  ') + line);
    }
    this.#draw();
  }

  token(_agent: string, text: string, from: TokenSource = {}): void {
    this.#model = from.model ?? this.#o.model ?? 'model';
    this.#stream = (this.#stream + text).replace(/\s+/gu, ' ').slice(-60);
    this.#draw();
  }

  note(line: string): void {
    this.#clear();
    this.#o.stream.write(line + '\n');
    this.#draw();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#clear();
  }

  #clear(): void {
    if (this.#drawn) this.#o.stream.write('\r\x1b[2K');
    this.#drawn = false;
  }

  #draw(): void {
    if (!this.#timer) return;
    const frame = FRAMES[this.#frame++ % FRAMES.length] ?? '*';
    const text =
      `${frame} ${this.#stage} · iteration ${this.#iteration}/${this.#o.maxIterations} · ${this.#o.messages()} messages · ${duration(Date.now() - this.#started)}` +
      (this.#stream ? ` · ${this.#model}: …${this.#stream}` : '');
    const width = this.#o.stream.columns ?? 80;
    this.#o.stream.write('\r\x1b[2K' + text.slice(0, Math.max(10, width - 1)));
    this.#drawn = true;
  }
}
