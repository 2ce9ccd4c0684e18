import { resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { ValidationError } from '../../errors.js';
import { integer, withBus } from '../options.js';
import { busUrl, cliLogger, isSharedBus, openBus, openState, samplesDir, type OpenBus, type OpenState } from '../runtime.js';
import { AGENT_NAMES, maxSourceBytes, skipWarning } from '../agents.js';
import {
  createDocumentAgents,
  modelConfigFromEnv,
  modelLabel,
  ModelTextPublisher,
  parseModelConfig,
  type DocumentAgents,
} from '../../agents/index.js';
import type { MessageBus } from '../../bus/bus.js';
import { defineAgent, type Agent } from '../../bus/agent.js';

interface AgentFlags {
  model?: string;
  bus?: string;
  state?: string;
  sources?: string;
  lease?: number;
}

/**
 * Test hook: with CONCORD_TEST_PAUSE_IN_HANDLER=<agent>, the first delivery this process gets,
 * if it is a first attempt, stops inside the handler (after saying so on stderr) and never
 * finishes, so a test can kill the worker mid-task and watch another worker take the task over.
 */
function pauseFirstDelivery(agent: Agent): Agent {
  let first = true;
  return defineAgent({
    name: agent.name,
    ...(agent.concurrency !== undefined ? { concurrency: agent.concurrency } : {}),
    handleMessage(message, ctx) {
      const pause = first && message.attempt === 1;
      first = false;
      if (!pause) return agent.handleMessage(message, ctx);
      process.stderr.write(`concord: test pause in ${agent.name} handling ${message.id} (pid ${process.pid})\n`);
      return new Promise<never>(() => setInterval(() => {}, 60_000));
    },
  });
}

/** A few words on what an agent answered, for its process's one line per message. */
export function summariseResult(result: unknown): string {
  if (result === undefined || result === null || typeof result !== 'object') return 'no reply';
  const r = result as Record<string, unknown>;
  const parts: string[] = [];
  if (Array.isArray(r['passages'])) parts.push(`${r['passages'].length} passages`);
  if (Array.isArray(r['skipped']) && r['skipped'].length) parts.push(`${r['skipped'].length} files skipped`);
  if (Array.isArray(r['citations'])) parts.push(`${r['citations'].length} citations`);
  if (Array.isArray(r['revisions']) && r['revisions'].length) parts.push(`${r['revisions'].length} revisions`);
  if (Array.isArray(r['changes'])) parts.push(`${r['changes'].length} edits`);
  if (typeof r['score'] === 'number') parts.push(`score ${r['score'].toFixed(2)}`);
  if (Array.isArray(r['problems'])) parts.push(`${r['problems'].length} problems`);
  if (typeof r['words'] === 'number') parts.push(`${r['words']} words`);
  return parts.length ? parts.join(', ') : 'replied';
}

/** Wraps an agent so its process prints one line per message it handles (stdout), with the outcome and time. */
function announced(agent: Agent, write: (line: string) => void = (l) => void process.stdout.write(l + '\n')): Agent {
  return defineAgent({
    name: agent.name,
    ...(agent.concurrency !== undefined ? { concurrency: agent.concurrency } : {}),
    async handleMessage(message, ctx) {
      const started = Date.now();
      const what = `agent ${agent.name}: ${message.type} ${message.id} from ${message.sender}${message.attempt > 1 ? ` (attempt ${message.attempt})` : ''}`;
      try {
        const result = await agent.handleMessage(message, ctx);
        write(`${what} → ${summariseResult(result)} (${Date.now() - started} ms)`);
        return result;
      } catch (err) {
        write(`${what} → failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)} (${Date.now() - started} ms)`);
        throw err;
      }
    },
  });
}

/** Publishes model text for runs to show; a failed publish is one warning per task, never a failed task. */
function modelTextPublisher(bus: MessageBus, label: string): ModelTextPublisher {
  return new ModelTextPublisher(bus, {
    model: label,
    onError: (err, task) =>
      process.stderr.write(
        `warning: agent ${task.recipient} could not publish model text for task ${task.id} (the task goes on): ${err instanceof Error ? err.message : String(err)}\n`,
      ),
  });
}

/** `concord agent <name>`: one document agent as its own worker process, until SIGTERM or SIGINT. */
export function registerAgentCommand(program: Command): void {
  withBus(
    program
      .command('agent')
      .description(`serve one document agent (${AGENT_NAMES.join(', ')}) on a shared bus until SIGTERM or Ctrl-C`)
      .argument('<name>', `the agent: ${AGENT_NAMES.join(' | ')}`),
    'shared message bus, e.g. redis://127.0.0.1:6379/0 (or $CONCORD_BUS)',
  )
    .option('--state <url>', 'state store handed to the agent as ctx.state (optional)')
    .option('--sources <dir>', 'sources directory (research and verification read it; default: the bundled samples)')
    .option(
      '--model <name>',
      "writing and editing: work through this chat model, whose text shows in the run's progress (see `concord run --help`; default: offline, or $CONCORD_MODEL)",
    )
    .option(
      '--lease <ms>',
      'how long this worker owns a message before another worker may take it over (default 60000)',
      integer('--lease', 100, 86_400_000),
    )
    .action(async (name: string, flags: AgentFlags) => {
      if (!AGENT_NAMES.includes(name)) {
        throw new ValidationError(`unknown agent \`${name}\`: expected one of ${AGENT_NAMES.join(', ')}`, { field: 'name' });
      }
      const busAt = busUrl(flags.bus);
      if (!isSharedBus(busAt)) {
        throw new ValidationError(
          'an agent process needs a bus shared between processes (--bus redis://host:6379/0): a memory:// bus cannot be reached from another process',
          { field: 'bus' },
        );
      }
      const sourcesDir = resolve(flags.sources ?? samplesDir());
      if (!existsSync(sourcesDir) || !statSync(sourcesDir).isDirectory()) {
        throw new ValidationError(`sources directory ${flags.sources ?? sourcesDir} does not exist`, { field: 'sources' });
      }
      const stateAt = flags.state ?? process.env['CONCORD_STATE'];
      let state: OpenState | undefined;
      let bus: OpenBus | undefined;
      try {
        state = stateAt ? await openState(stateAt, { create: true }) : undefined;
        bus = await openBus(busAt, {
          ...(state ? { state: state.state } : {}),
          ...(flags.lease !== undefined ? { leaseMs: flags.lease } : {}),
          logger: cliLogger('warn'),
        });
        const limit = maxSourceBytes();
        const found = modelConfigFromEnv(flags.model);
        const model = found ? parseModelConfig(found) : undefined;
        // What the model streams goes to the run over the bus, which shows it in its progress display.
        const text = model ? modelTextPublisher(bus.bus, modelLabel(model)) : undefined;
        const agent = createDocumentAgents({
          sourcesDir,
          onSkip: (s) => process.stderr.write(skipWarning(s) + '\n'),
          ...(limit !== undefined ? { maxSourceBytes: limit } : {}),
          ...(model ? { model } : {}),
          ...(text ? { onToken: (from, piece, task) => text.write(from, task, piece) } : {}),
        })[name as keyof DocumentAgents];
        const paused = process.env['CONCORD_TEST_PAUSE_IN_HANDLER'] === name ? pauseFirstDelivery(agent) : agent;
        bus.bus.registerAgent(name, announced(text ? text.around(paused) : paused));
        await bus.bus.ready();
      } catch (err) {
        await bus?.close().catch(() => {});
        await state?.close().catch(() => {});
        throw err;
      }

      // Serve until a signal; then drain in-flight handlers and close. A second signal during
      // the drain stops at once.
      let stopping = false;
      const signal = await new Promise<NodeJS.Signals>((done) => {
        const onSignal = (sig: NodeJS.Signals) => {
          if (!stopping) {
            stopping = true;
            done(sig);
            return;
          }
          process.stdout.write(`agent ${name} stopped at once (second ${sig}); unfinished messages return after their lease\n`);
          process.exit(sig === 'SIGINT' ? 130 : 143);
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        // Only once the handlers are in place: a supervisor may signal as soon as it reads this line.
        process.stdout.write(`agent ${name} serving on ${bus.transport.url} (pid ${process.pid}); stop with Ctrl-C or SIGTERM\n`);
      });
      process.stdout.write(`agent ${name} stopping (${signal}): finishing in-flight messages\n`);
      await bus.close();
      await state?.close().catch(() => {});
      process.stdout.write(`agent ${name} stopped after ${bus.bus.metrics().messagesReceived} deliveries\n`);
    });
}
