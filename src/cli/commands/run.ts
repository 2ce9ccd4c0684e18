import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { redactUrl, ValidationError, WorkflowNotFoundError } from '../../errors.js';
import { Orchestrator, slugify, type OrchestratorHooks } from '../../workflow/orchestrator.js';
import { DOCUMENT_PIPELINE, documentPipeline } from '../../workflow/document-pipeline.js';
import type { WorkflowOutcome } from '../../workflow/types.js';
import { DEFAULT_WORDS } from '../../agents/payloads.js';
import { modelConfigFromEnv, modelLabel, parseModelConfig, type ModelConfig } from '../../agents/model.js';
import { modelTextTopic, parseModelTextChunk } from '../../agents/model-text.js';
import type { MessageBus, Subscription } from '../../bus/bus.js';
import { createProgress, describe, type ProgressDisplay } from '../progress.js';
import { json, score, scores, shellQuote } from '../format.js';
import { collect, fraction, integer, withBus, withState } from '../options.js';
import {
  busUrl,
  checkBusUrl,
  cliCommand,
  cliLogger,
  isSharedBus,
  openBus,
  openState,
  samplesDir,
  stateUrl,
  DEFAULT_STATE_URL,
  type OpenBus,
  type OpenState,
} from '../runtime.js';
import { AGENT_NAMES, registerDocumentAgents, skipWarning } from '../agents.js';

/** The topic `concord demo` writes about. */
export const DEMO_TOPIC = 'Reliable coordination of multi-agent systems';
/** What the demo's document must cover. */
export const DEMO_REQUIREMENTS = ['delivery guarantees', 'idempotency', 'workflow recovery', 'observability'];

interface RunFlags {
  model?: string;
  sources?: string;
  out?: string;
  state?: string;
  bus?: string;
  words?: number;
  requirement?: string[];
  threshold?: number;
  maxIterations?: number;
  agents?: 'local' | 'remote';
  timeout?: number;
  lease?: number;
  json?: boolean;
  progress?: boolean;
}

/** A command to print for the user, with `--state` when it is not the default (its password redacted: the user gives it again). */
function cliAfter(cmd: string, state: string): string {
  // Options after the subcommand read naturally and work with commander.
  return `${cliCommand()} ${cmd}` + (state === DEFAULT_STATE_URL ? '' : ` --state ${shellQuote(redactUrl(state))}`);
}

function showPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

/*
 * Where a run reads its sources, where it writes its document and which bus it joins: checked
 * for `--sources`, `--out` and `--bus`, and by `resume` for the values the run recorded in its
 * workflow data (the same checks, so a record edited in the state store cannot make a resume
 * read or write anything a run could not, or connect to a URL a run would refuse). `what`
 * names the value in errors: the flag, or the recorded field.
 */

/** A directory holding sources: its absolute path. */
function checkSources(dir: string, what = '--sources'): string {
  const abs = resolve(dir);
  if (dir.includes('\0') || !existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new ValidationError(`${what}: sources directory ${dir} does not exist or is not a directory`, { field: 'sources' });
  }
  if (!readdirSync(abs, { recursive: true }).some((f) => /\.(md|markdown|txt)$/i.test(String(f)))) {
    throw new ValidationError(`${what}: sources directory ${dir} has no .md, .markdown or .txt files`, { field: 'sources' });
  }
  return abs;
}

/** What is at `path` (symlinks followed), or undefined when nothing is (a file on the way included). */
function statIfAny(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** A file the document may be written to (new, or an existing regular file): its absolute path. */
function checkOut(file: string, what = '--out'): string {
  if (file.trim() === '' || file.includes('\0'))
    throw new ValidationError(`${what} must be a file path, got ${JSON.stringify(file)}`, { field: 'out' });
  const abs = resolve(file);
  const existing = statIfAny(abs);
  if (existing && !existing.isFile()) {
    throw new ValidationError(
      `${what}: ${file} exists and is not a regular file (a directory, device or socket); the document is written to a file`,
      { field: 'out' },
    );
  }
  const parent = statIfAny(dirname(abs));
  if (parent && !parent.isDirectory()) throw new ValidationError(`${what}: ${dirname(abs)} is not a directory`, { field: 'out' });
  return abs;
}

/**
 * A value a run recorded in its workflow data, checked as the run checked it: a recorded path
 * is absolute (the run recorded it resolved), a recorded bus is one the run would record.
 */
async function recorded(
  workflowId: string,
  input: Record<string, unknown>,
  key: 'sourcesDir' | 'out' | 'bus' | 'maxIterations' | 'threshold',
  flag?: string,
): Promise<unknown> {
  const value = input[key];
  const what = `workflow ${workflowId} recorded ${key}`;
  const refuse = (expected: string): never => {
    const shown =
      typeof value === 'string' ? JSON.stringify(key === 'bus' ? redactUrl(value) : value) : (JSON.stringify(value) ?? String(value));
    throw new ValidationError(
      `${what} ${shown} is not ${expected}: was the workflow record edited?${flag ? ` Pass ${flag} to choose` : ''}`,
      { field: key },
    );
  };
  switch (key) {
    case 'sourcesDir':
    case 'out':
      if (typeof value !== 'string' || !isAbsolute(value)) return refuse('an absolute path');
      return key === 'out' ? checkOut(value, what) : checkSources(value, what);
    case 'bus':
      await checkBusUrl(value, what);
      if (!recordableBus(value as string)) return refuse('a shared bus URL without a password');
      return value;
    case 'maxIterations':
      try {
        if (typeof value !== 'number') throw new TypeError();
        return integer(what, 1, 20)(String(value));
      } catch {
        return refuse('an integer 1..20');
      }
    case 'threshold':
      try {
        if (typeof value !== 'number') throw new TypeError();
        return fraction(what)(String(value));
      } catch {
        return refuse('a number between 0 and 1');
      }
  }
}

/** Hooks that pause a run at a durable point so tests can kill it deterministically. */
function testHooks(): OrchestratorHooks {
  const after = process.env['CONCORD_TEST_PAUSE_AFTER_STAGE'];
  const before = process.env['CONCORD_TEST_PAUSE_BEFORE_COMPLETE'];
  if (!after && !before) return {};
  const pause = (what: string) =>
    new Promise<void>(() => {
      process.stderr.write(`concord: test pause ${what} (pid ${process.pid})\n`);
      setInterval(() => {}, 60_000);
    });
  return {
    ...(after ? { afterStage: (stage: string) => (stage === after ? pause(`after stage ${stage}`) : undefined) } : {}),
    ...(before ? { beforeComplete: (stage: string) => (stage === before ? pause(`before completing stage ${stage}`) : undefined) } : {}),
  };
}

interface Session {
  state: OpenState;
  bus: OpenBus;
  progress: ProgressDisplay | undefined;
  close(): Promise<void>;
}

async function openSession(
  flags: RunFlags,
  sourcesDir: string | undefined,
  maxIterations: number,
  model: ModelConfig | undefined,
): Promise<Session> {
  const stateAt = stateUrl(flags.state);
  const busAt = await checkBusUrl(busUrl(flags.bus), '--bus');
  const remote = flags.agents === 'remote';
  let progress: ProgressDisplay | undefined;
  if (remote && !isSharedBus(busAt)) {
    throw new ValidationError(
      '--agents remote needs a bus shared between processes (--bus redis://host:6379/0): a memory:// bus only reaches agents in this process',
      { field: 'agents' },
    );
  }
  const state = await openState(stateAt, { create: true });
  let bus: OpenBus;
  try {
    bus = await openBus(busAt, { state: state.state });
  } catch (err) {
    await state.close().catch(() => {});
    throw err;
  }
  try {
    if (remote) {
      for (const name of AGENT_NAMES) {
        if (!(await bus.transport.hasRecipient(name))) {
          throw new ValidationError(
            `no \`${name}\` agent is serving on ${bus.transport.url}: start it with \`concord agent ${name} --bus ${bus.transport.url}${name === 'research' || name === 'verification' ? ' --sources DIR' : ''}\``,
            { field: 'agents' },
          );
        }
      }
      if (flags.progress !== false) process.stderr.write(`agents: remote, serving on ${bus.transport.url}\n`);
    } else {
      if (!sourcesDir) throw new ValidationError('local agents need the sources directory', { field: 'sources' });
      // Skipped sources are warned about above the live progress line (it exists by then).
      registerDocumentAgents(bus.bus, sourcesDir, {
        onSkip: (s) => (progress ? progress.note(skipWarning(s)) : process.stderr.write(skipWarning(s) + '\n')),
        ...(model ? { model, onToken: (agent, text) => progress?.token(agent, text) } : {}),
      });
    }
  } catch (err) {
    await bus.close().catch(() => {});
    await state.close().catch(() => {});
    throw err;
  }
  progress =
    flags.progress === false
      ? undefined
      : createProgress({
          stream: process.stderr,
          messages: () => bus.bus.metrics().messagesSent,
          maxIterations,
          ...(model ? { model: modelLabel(model) } : {}),
        });
  let closed = false;
  return {
    state,
    bus,
    progress,
    async close() {
      if (closed) return;
      closed = true;
      progress?.stop();
      await bus.close().catch(() => {});
      await state.close().catch(() => {});
    },
  };
}

/**
 * Ctrl-C or SIGTERM: says how to continue and exits at once. Every step is already durable, so
 * stopping here is no worse than a crash, which `resume` handles; closing the bus first would
 * only make the stage in flight look failed.
 */
function onInterrupt(session: Session, workflowId: () => string | undefined): () => void {
  const handler = (signal: NodeJS.Signals) => {
    session.progress?.stop();
    const id = workflowId();
    process.stderr.write(
      `concord: interrupted (${signal})${id ? `; continue with: ${cliAfter(`resume ${id}`, session.state.url)}` : ''}\n`,
    );
    const exit = () => process.exit(signal === 'SIGINT' ? 130 : 143);
    // Hand back the run lease so `resume` can start at once (a crash would make it wait for
    // the lease to run out); never let a slow store hold the exit up for long.
    setTimeout(exit, 1000).unref();
    session.state.state.locks.releaseAll().then(exit, exit);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

function writeOut(outcome: WorkflowOutcome, out: string): void {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, outcome.content.endsWith('\n') ? outcome.content : outcome.content + '\n');
}

/** Exit code of a run that completed below its verification threshold. */
export const EXIT_BELOW_THRESHOLD = 3;

/** The one line a run below its threshold ends with (stderr), naming the score and the threshold. */
function belowThresholdLine(outcome: WorkflowOutcome): string {
  const threshold = documentPipelineThreshold(outcome.data);
  const value = outcome.scores['verification'];
  return `concord: the document did not pass verification: score ${againstThreshold(value, threshold)} is below the threshold ${score(threshold)} after ${outcome.iterations} round${outcome.iterations === 1 ? '' : 's'}`;
}

function report(
  outcome: WorkflowOutcome,
  out: string | undefined,
  stateAt: string,
  options: { json: boolean; demo: boolean; diff: [number, number] | null },
): number {
  const data = outcome.data;
  const verification = data.outputs['verification'];
  const subScores = (verification?.output['scores'] ?? {}) as Record<string, number>;
  if (options.json) {
    process.stdout.write(
      json({
        workflowId: outcome.workflowId,
        documentId: outcome.documentId,
        status: outcome.status,
        accepted: outcome.accepted,
        iterations: outcome.iterations,
        documentVersion: outcome.documentVersion,
        scores: outcome.scores,
        verification: subScores,
        out: out ?? null,
        error: outcome.error,
        historyCommand: cliAfter(`history ${outcome.documentId}`, stateAt),
      }) + '\n',
    );
    if (outcome.status !== 'completed') return 1;
    if (!outcome.accepted) process.stderr.write(belowThresholdLine(outcome) + '\n');
    return outcome.accepted ? 0 : EXIT_BELOW_THRESHOLD;
  }
  if (outcome.status !== 'completed') {
    process.stderr.write(
      `concord: workflow ${outcome.workflowId} failed: ${outcome.error?.message ?? 'unknown error'}\n` +
        `         retry from where it stopped: ${cliAfter(`resume ${outcome.workflowId}`, stateAt)}\n`,
    );
    return 1;
  }
  const threshold = typeof verification !== 'undefined' ? documentPipelineThreshold(data) : undefined;
  const firstDraft = options.diff?.[0] ?? data.steps.find((s) => s.stage === 'writing' && typeof s.version === 'number')?.version ?? 1;
  const lines = [
    '',
    `Document written to ${out ? showPath(out) : '(not written)'}`,
    ...(outcome.accepted
      ? []
      : [
          `Note: the document stayed below the verification threshold after ${outcome.iterations} round${outcome.iterations === 1 ? '' : 's'}.`,
        ]),
    `  topic      ${data.topic}`,
    `  quality    verification ${againstThreshold(outcome.scores['verification'], threshold)}` +
      (threshold !== undefined ? ` (threshold ${score(threshold)}: ${outcome.accepted ? 'met' : 'NOT met'})` : '') +
      (Object.keys(subScores).length ? ` — ${scores(subScores)}` : ''),
    `  stages     ${scores(outcome.scores, ['research', 'writing', 'editing', 'verification'])}`,
    `  rounds     ${outcome.iterations} (${data.revisions.length} revision${data.revisions.length === 1 ? '' : 's'} after verification feedback)`,
    `  workflow   ${outcome.workflowId}`,
    `  document   ${outcome.documentId}, version ${outcome.documentVersion}`,
    '',
  ];
  if (/^memory:/i.test(stateAt)) {
    // Nothing to inspect later: the versions lived in this process.
    lines.push('The state was in memory (--state memory://): its history is gone with this process.', '');
  } else {
    lines.push(
      `See its history:  ${cliAfter(`history ${outcome.documentId}`, stateAt)}`,
      `Read a version:   ${cliAfter(`show ${outcome.documentId} --version ${firstDraft}`, stateAt)}`,
      ...(options.diff
        ? [`Compare versions: ${cliAfter(`diff ${outcome.documentId} ${options.diff[0]} ${options.diff[1]}`, stateAt)}`]
        : []),
      '',
    );
  }
  if (options.demo && data.revisions.length === 0 && outcome.accepted) {
    // A suggestion that really makes verification send problems back: a threshold above this
    // score, or (at full marks) a length the sample notes cannot fill.
    const got = outcome.scores['verification'] ?? 1;
    const harder = got < 0.995 ? `--threshold ${(Math.floor(got * 100) + 1) / 100}` : '--words 2000 --threshold 0.9';
    lines.push(`Verification passed at once. To watch it send problems back to the writer: ${cliCommand()} demo ${harder}`, '');
  }
  if (!outcome.accepted) lines.push(...problemLines(data), '');
  process.stdout.write(lines.join('\n'));
  if (!outcome.accepted) {
    process.stderr.write(belowThresholdLine(outcome) + '\n');
    return EXIT_BELOW_THRESHOLD;
  }
  return 0;
}

/** What the last verdict found wrong, with the draft version it judged, and why revising stopped early. */
export function problemLines(data: WorkflowOutcome['data'], max = 10): string[] {
  const last = data.judgements?.at(-1);
  if (!last) return [];
  const out = [
    `Problems verification found in version ${last.draftVersion} (score ${last.score.toFixed(2)}, threshold ${last.threshold.toFixed(2)}):`,
  ];
  for (const p of last.problems.slice(0, max)) {
    const o = (p ?? {}) as { kind?: string; message?: string };
    out.push(`  - ${o.kind ?? 'problem'}: ${o.message ?? JSON.stringify(p)}`);
  }
  if (last.problems.length > max) out.push(`  … and ${last.problems.length - max} more (concord workflows --json shows them all)`);
  if (data.stopped) out.push(`Revisions stopped after round ${data.stopped.iteration}: ${data.stopped.reason}`);
  return out;
}

/**
 * The first draft's version and the latest version whose content differs from it (what editing
 * and revisions changed), or null when no later version changed the text.
 */
async function draftsThatDiffer(outcome: WorkflowOutcome, state: OpenState['state']): Promise<[number, number] | null> {
  const first = outcome.data.steps.find((s) => s.stage === 'writing' && typeof s.version === 'number')?.version;
  if (typeof first !== 'number') return null;
  const a = await state.getDocumentAtVersion(outcome.documentId, first).catch(() => null);
  if (!a) return null;
  for (let v = outcome.documentVersion; v > first; v--) {
    const b = await state.getDocumentAtVersion(outcome.documentId, v).catch(() => null);
    if (b && b.content !== a.content) return [first, v];
  }
  return null;
}

/** A score to two decimals, or three when two would hide which side of the threshold it is on. */
function againstThreshold(value: number | undefined, threshold: number | undefined): string {
  if (value === undefined || threshold === undefined) return score(value);
  return score(value) === score(threshold) && value !== threshold ? value.toFixed(3) : score(value);
}

function documentPipelineThreshold(data: WorkflowOutcome['data']): number | undefined {
  const t = data.input['threshold'];
  return typeof t === 'number' ? t : undefined;
}

async function execute(
  given: RunFlags,
  start:
    | { topic: string; sourcesDir: string | undefined; words: number; requirements: string[]; out: string | undefined; demo?: boolean }
    | { resume: string },
): Promise<number> {
  let flags = given;
  const stateAt = stateUrl(flags.state);
  let maxIterations = flags.maxIterations ?? 3;
  let threshold = flags.threshold ?? 0.8;
  let sourcesDir = 'resume' in start ? undefined : start.sourcesDir;
  let out = 'resume' in start ? undefined : start.out;
  let recordedModel: string | undefined;

  // A resumed run takes its settings from what the first run recorded.
  if ('resume' in start) {
    const peek = await openState(stateAt, { create: false });
    try {
      const wf = await peek.state.getWorkflowState(start.resume);
      if (!wf) throw new WorkflowNotFoundError(start.resume);
      const input = (wf.data as { input?: Record<string, unknown>; definition?: string }).input ?? {};
      if ((wf.data as { definition?: string }).definition !== DOCUMENT_PIPELINE) {
        throw new ValidationError(`workflow \`${start.resume}\` is not a document pipeline run`, { field: 'workflowId' });
      }
      // Flags given now win; what the run recorded is checked as the run checked it (see `recorded`).
      const id = start.resume;
      if (flags.maxIterations === undefined && input['maxIterations'] !== undefined)
        maxIterations = (await recorded(id, input, 'maxIterations')) as number;
      if (flags.threshold === undefined && input['threshold'] !== undefined) threshold = (await recorded(id, input, 'threshold')) as number;
      if (flags.sources) sourcesDir = checkSources(flags.sources);
      else if (input['sourcesDir'] !== undefined && input['sourcesDir'] !== null)
        sourcesDir = (await recorded(id, input, 'sourcesDir', '--sources')) as string;
      if (flags.out) out = checkOut(flags.out);
      else if (input['out'] !== undefined) out = (await recorded(id, input, 'out', '--out')) as string;
      // A run written by a model goes on with it (the endpoint and key come from the environment again).
      if (typeof input['model'] === 'string') recordedModel = input['model'];
      // Remote agents serve on a shared bus: a resume goes back to them unless told otherwise.
      // The bus URL is only recorded without a password, so one with a password must be given again.
      if (flags.agents === undefined && input['agents'] === 'remote') flags = { ...flags, agents: 'remote' };
      if (flags.bus === undefined && process.env['CONCORD_BUS'] === undefined && input['bus'] !== undefined) {
        flags = { ...flags, bus: (await recorded(id, input, 'bus', '--bus')) as string };
      }
    } finally {
      await peek.close();
    }
  }

  const log = cliLogger();
  const model = modelConfigFromEnv(flags.model ?? recordedModel);
  if (model) parseModelConfig(model);
  if (model && flags.agents === 'remote') {
    throw new ValidationError(
      '--model applies to agents in this process; with --agents remote, start the agents with `concord agent writing --model NAME`',
      { field: 'model' },
    );
  }
  const session = await openSession(flags, sourcesDir, maxIterations, model);
  let workflowId: string | undefined = 'resume' in start ? start.resume : undefined;
  const suffix = Date.now().toString(36).slice(-4) + Math.random().toString(36).slice(2, 6);
  const runId = 'resume' in start ? start.resume : `wf-${slugify(start.topic, 32)}-${suffix}`;
  const release = onInterrupt(session, () => workflowId);
  let modelText: Subscription | undefined;
  try {
    if (session.progress) modelText = await followModelText(session.bus.bus, runId, session.progress);
    const orchestrator = new Orchestrator({
      bus: session.bus.bus,
      state: session.state.state,
      definition: documentPipeline({ threshold, maxIterations, ...(flags.timeout ? { timeoutMs: flags.timeout } : {}) }),
      onEvent: (event) => {
        if (event.type === 'workflow_started') workflowId = event.workflowId;
        session.progress?.handle(event);
        const line = describe(event, maxIterations);
        if (line)
          (event.type === 'workflow_failed' || event.type === 'stage_retry' ? log.warn : log.info).call(log, { event: event.type }, line);
      },
      hooks: testHooks(),
      ...(flags.lease ? { lease: { ttlMs: flags.lease } } : {}),
    });
    let outcome: WorkflowOutcome;
    if ('resume' in start) {
      outcome = await orchestrator.resume(start.resume);
    } else {
      workflowId = runId;
      out = start.out ?? resolve('.concord', 'out', `${slugify(start.topic)}.md`);
      outcome = await orchestrator.start({
        workflowId,
        documentId: `doc-${slugify(start.topic, 32)}-${suffix}`,
        topic: start.topic,
        input: {
          words: start.words,
          requirements: start.requirements,
          sourcesDir: sourcesDir ?? null,
          out,
          threshold,
          maxIterations,
          agents: flags.agents ?? 'local',
          ...(model ? { model: model.model } : {}),
          ...(recordableBus(busUrl(flags.bus)) ? { bus: busUrl(flags.bus) } : {}),
        },
        requirements: { requirements: start.requirements, words: start.words },
        context: { sourcesDir: sourcesDir ?? null, workflowId },
      });
    }
    // Before the display stops: text arriving late must not print below the report.
    await modelText?.unsubscribe().catch(() => {});
    session.progress?.stop();
    if (outcome.status === 'completed' && out) writeOut(outcome, out);
    const diff = outcome.status === 'completed' ? await draftsThatDiffer(outcome, session.state.state) : null;
    return report(outcome, out, stateAt, { json: flags.json === true, demo: 'demo' in start && start.demo === true, diff });
  } finally {
    release();
    await modelText?.unsubscribe().catch(() => {});
    await session.close();
  }
}

/**
 * Shows in `progress` the text models stream in agent processes for workflow `workflowId`: they
 * publish it on the bus (`ModelTextPublisher`, docs/PROTOCOL.md §9) and the run follows the topic
 * while it runs. Agents in this process hand their text to `progress.token` directly instead: a
 * trip through the bus would only delay it. A subscription that fails costs the display, not the run.
 */
async function followModelText(bus: MessageBus, workflowId: string, progress: ProgressDisplay): Promise<Subscription> {
  const sub = bus.subscribe(modelTextTopic(workflowId), (message) => {
    const chunk = parseModelTextChunk(message.payload);
    if (chunk.text !== '')
      progress.token(chunk.agent, chunk.text, { ...(chunk.model ? { model: chunk.model } : {}), tokens: chunk.tokens });
  });
  await sub.ready.catch((err: unknown) =>
    progress.note(`warning: text streamed by models in agent processes will not show: ${err instanceof Error ? err.message : String(err)}`),
  );
  return sub;
}

/** A bus URL that may be kept in workflow data: a shared one with nothing `redactUrl` would hide (password, token, credential parameter). */
function recordableBus(url: string): boolean {
  return isSharedBus(url) && redactUrl(url) === url;
}

/** `concord demo`, `concord run`, `concord resume`. */
export function registerRunCommands(program: Command): void {
  const addRunOptions = (cmd: Command) =>
    withBus(withState(cmd))
      .addOption(
        new Option(
          '--agents <where>',
          'local (default): the four agents run in this process; remote: they serve on --bus (concord agent NAME); resume keeps what the run used',
        ).choices(['local', 'remote']),
      )
      .option('--timeout <ms>', 'how long each agent may take to answer', integer('--timeout', 100, 3_600_000))
      .option(
        '--lease <ms>',
        "how long this run's claim on the workflow lasts unrenewed: a crashed run's claim runs out after it (default 10000)",
        integer('--lease', 100, 600_000),
      )
      .option(
        '--model <name>',
        'write and edit through this chat model on an OpenAI-compatible endpoint: CONCORD_MODEL_BASE_URL or OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama), key from CONCORD_MODEL_API_KEY or OPENAI_API_KEY (default: no model, offline; or $CONCORD_MODEL)',
      )
      .option('--no-progress', 'print no progress')
      .option('--json', 'print the outcome as JSON');

  addRunOptions(
    program
      .command('demo')
      .description(`write a cited document about "${DEMO_TOPIC}" from the bundled sample sources`)
      .option('--out <file>', 'where to write the document (default: .concord/out/<topic>.md)')
      .option('--words <n>', 'target length in words (default 600)', integer('--words', 50, 20_000))
      .option('--threshold <score>', 'verification score to reach (default 0.8)', fraction('--threshold'))
      .option('--max-iterations <n>', 'revision rounds at most, first draft included (default 3)', integer('--max-iterations', 1, 20)),
  ).action(async (flags: RunFlags) => {
    const sourcesDir = checkSources(samplesDir());
    process.exitCode = await execute(flags, {
      demo: true,
      topic: DEMO_TOPIC,
      sourcesDir,
      words: flags.words ?? 600,
      requirements: DEMO_REQUIREMENTS,
      out: flags.out ? checkOut(flags.out) : undefined,
    });
  });

  addRunOptions(
    program
      .command('run')
      .description('write a cited document about TOPIC from the sources in DIR')
      .argument('<topic>', 'what the document is about')
      .requiredOption('--sources <dir>', 'directory of Markdown or text sources to cite')
      .option('--out <file>', 'where to write the document (default: .concord/out/<topic>.md)')
      .option('--words <n>', `target length in words (default ${DEFAULT_WORDS})`, integer('--words', 50, 20_000))
      .option('--requirement <text>', 'something the document must cover (repeatable)', collect)
      .option('--threshold <score>', 'verification score to reach (default 0.8)', fraction('--threshold'))
      .option('--max-iterations <n>', 'revision rounds at most, first draft included (default 3)', integer('--max-iterations', 1, 20)),
  ).action(async (topic: string, flags: RunFlags) => {
    if (topic.trim() === '') throw new ValidationError('topic must not be empty', { field: 'topic' });
    const sourcesDir = checkSources(flags.sources ?? '');
    process.exitCode = await execute(flags, {
      topic,
      sourcesDir,
      words: flags.words ?? DEFAULT_WORDS,
      requirements: flags.requirement ?? [],
      out: flags.out ? checkOut(flags.out) : undefined,
    });
  });

  addRunOptions(
    program
      .command('resume')
      .description('continue a workflow where it stopped (after a crash, Ctrl-C or a failure)')
      .argument('<workflowId>', 'the workflow to continue')
      .option('--sources <dir>', 'sources directory, if it moved since the run started')
      .option('--out <file>', 'where to write the document, if not where the run said'),
  ).action(async (id: string, flags: RunFlags) => {
    process.exitCode = await execute(flags, { resume: id });
  });
}

export { AGENT_NAMES };
