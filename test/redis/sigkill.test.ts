/**
 * Fault: a worker process killed with SIGKILL mid-task. Real processes on the shared Redis (own
 * namespace): the document pipeline runs with `--agents remote`, two `concord agent writing`
 * workers compete for the writing task, and the one that takes it is killed while inside its
 * handler (CONCORD_TEST_PAUSE_IN_HANDLER makes a worker's first delivery hang there). Its lease
 * runs out, the other worker gets the task with attempt 2, and the run completes with the same
 * document as a single-process run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, testNamespace, waitFor } from '../helpers/services.js';
import { cleanupNamespace } from './helpers.js';
import { requireBuild, runCli, SOURCES, startCli, tempDir, type CliProcess, type CliResult } from '../cli/helpers.js';

const up = await serviceAvailable('redis');
const TOPIC = 'Reliable coordination of multi-agent systems';
/** Short, so the task comes back within seconds of the kill. */
const LEASE_MS = 1500;

/** The bus's structured "message delivered" log lines of a worker started with CONCORD_LOG_LEVEL=debug. */
function deliveries(worker: CliProcess): Array<{ id: string; attempt: number }> {
  const out: Array<{ id: string; attempt: number }> = [];
  for (const line of worker.stderr().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; id?: string; attempt?: number };
      if (entry.msg === 'message delivered' && typeof entry.id === 'string') out.push({ id: entry.id, attempt: Number(entry.attempt) });
    } catch {
      // Not a log line.
    }
  }
  return out;
}

describe.runIf(up)('a worker killed with SIGKILL mid-task (real processes, real Redis)', () => {
  const tmp = tempDir();
  const ns = testNamespace('sigkill');
  const bus = `${SERVICES.redis.url}?namespace=${ns}`;
  const started: CliProcess[] = [];
  let writers: CliProcess[] = [];

  function start(args: string[], env: Record<string, string> = {}): CliProcess {
    const p = startCli(args, { cwd: tmp.dir, env });
    started.push(p);
    return p;
  }

  beforeAll(async () => {
    requireBuild();
    const others = ['research', 'editing', 'verification'].map((name) => start(['agent', name, '--bus', bus, '--sources', SOURCES]));
    writers = [0, 1].map(() =>
      start(['agent', 'writing', '--bus', bus, '--lease', String(LEASE_MS)], {
        CONCORD_TEST_PAUSE_IN_HANDLER: 'writing',
        CONCORD_LOG_LEVEL: 'debug',
      }),
    );
    await Promise.all([...others, ...writers].map((p) => p.waitFor(/agent \w+ serving on redis:\/\//)));
  });

  afterAll(async () => {
    for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(started.map((p) => p.exited));
    await cleanupNamespace(ns);
    tmp.cleanup();
  });

  it('redelivers the task to the other worker after its lease, and the workflow completes with the same document', {
    timeout: 120_000,
  }, async () => {
    const common = ['--sources', SOURCES, '--words', '500', '--requirement', 'idempotency', '--no-progress', '--json'];
    const run = start([
      'run',
      TOPIC,
      ...common,
      '--bus',
      bus,
      '--agents',
      'remote',
      '--state',
      `sqlite:${join(tmp.dir, 'remote.db')}`,
      '--out',
      'remote.md',
    ]);

    // Whichever worker took the writing task says so from inside its handler; kill that one.
    const victim = (await waitFor(
      () => writers.find((w) => /test pause in writing handling/.test(w.stderr())),
      'a writing worker to be mid-task',
      60_000,
    ))!;
    const survivor = writers.find((w) => w !== victim)!;
    const taskId = /test pause in writing handling (\S+) \(pid (\d+)\)/.exec(victim.stderr())?.[1];
    expect(taskId).toBeDefined();
    victim.child.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');

    let finished: CliResult | undefined;
    void run.exited.then((r) => (finished = r));
    const result = (await waitFor(() => finished, 'the remote run to finish', 90_000))!;
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'completed' });

    // The killed worker's task went to the survivor as a second attempt.
    expect(deliveries(survivor)).toContainEqual({ id: taskId, attempt: 2 });
    const dlq = await runCli(['dlq', 'list', '--bus', bus, '--json'], { cwd: tmp.dir });
    expect(JSON.parse(dlq.stdout)).toEqual([]);

    const local = await runCli(['run', TOPIC, ...common, '--state', `sqlite:${join(tmp.dir, 'local.db')}`, '--out', 'local.md'], {
      cwd: tmp.dir,
    });
    expect(local.code, local.stderr).toBe(0);
    expect(readFileSync(join(tmp.dir, 'remote.md'), 'utf8')).toBe(readFileSync(join(tmp.dir, 'local.md'), 'utf8'));
    expect(JSON.parse(result.stdout).scores).toEqual(JSON.parse(local.stdout).scores);
  });
});
