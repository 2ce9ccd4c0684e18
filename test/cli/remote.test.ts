import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, testNamespace } from '../helpers/services.js';
import { cleanupNamespace } from '../redis/helpers.js';
import { requireBuild, runCli, SOURCES, startCli, tempDir, type CliProcess } from './helpers.js';

const redisUp = await serviceAvailable('redis');
const AGENTS = ['research', 'writing', 'editing', 'verification'];
const TOPIC = 'Reliable coordination of multi-agent systems';

describe.runIf(redisUp)('each agent in its own process over Redis', () => {
  const tmp = tempDir();
  const namespaces = [testNamespace('cli'), testNamespace('cli-state')];
  const bus = `${SERVICES.redis.url}?namespace=${namespaces[0]}`;
  const agents: CliProcess[] = [];

  beforeAll(async () => {
    requireBuild();
    for (const name of AGENTS) agents.push(startCli(['agent', name, '--bus', bus, '--sources', SOURCES], { cwd: tmp.dir }));
    await Promise.all(agents.map((a, i) => a.waitFor(new RegExp(`agent ${AGENTS[i]} serving on redis://`))));
  });
  afterAll(async () => {
    for (const a of agents) a.child.kill('SIGTERM');
    await Promise.all(agents.map((a) => a.exited));
    for (const ns of namespaces) await cleanupNamespace(ns);
    tmp.cleanup();
  });

  it('completes the pipeline with --agents remote and writes the same document as the single-process run', async () => {
    const common = [
      '--sources',
      SOURCES,
      '--words',
      '500',
      '--requirement',
      'idempotency',
      '--requirement',
      'observability',
      '--no-progress',
      '--json',
    ];
    const remote = await runCli(
      [
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
      ],
      {
        cwd: tmp.dir,
      },
    );
    expect(remote.code, remote.stderr).toBe(0);
    expect(JSON.parse(remote.stdout)).toMatchObject({ status: 'completed' });

    const local = await runCli(['run', TOPIC, ...common, '--state', `sqlite:${join(tmp.dir, 'local.db')}`, '--out', 'local.md'], {
      cwd: tmp.dir,
    });
    expect(local.code, local.stderr).toBe(0);

    expect(readFileSync(join(tmp.dir, 'remote.md'), 'utf8')).toBe(readFileSync(join(tmp.dir, 'local.md'), 'utf8'));
    expect(JSON.parse(remote.stdout).scores).toEqual(JSON.parse(local.stdout).scores);
  });

  it('each agent process prints one line per message it handles, saying what it answered', async () => {
    // The first test's run went through every agent at least once.
    await agents[0]!.waitFor(/agent research: task \S+ from orchestrator → \d+ passages \(\d+ ms\)/);
    await agents[1]!.waitFor(/agent writing: task \S+ from orchestrator → \d+ citations.* \(\d+ ms\)/);
    await agents[2]!.waitFor(/agent editing: task \S+ from orchestrator → \d+ edits, \d+ words \(\d+ ms\)/);
    await agents[3]!.waitFor(/agent verification: task \S+ from orchestrator → score \d\.\d\d, \d+ problems, \d+ words \(\d+ ms\)/);
    for (const a of agents) {
      const handled = a
        .stdout()
        .split('\n')
        .filter((l) => / from orchestrator → /.test(l));
      const ids = handled.map((l) => / (\S+) from orchestrator/.exec(l)?.[1]);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  it('the state can live in Redis too', async () => {
    const state = `${SERVICES.redis.url}?namespace=${namespaces[1]}`;
    const run = await runCli(
      ['run', 'Shared state', '--sources', SOURCES, '--bus', bus, '--agents', 'remote', '--state', state, '--json', '--out', 'shared.md'],
      {
        cwd: tmp.dir,
      },
    );
    expect(run.code, run.stderr).toBe(0);
    const { documentId } = JSON.parse(run.stdout) as { documentId: string };
    const history = await runCli(['history', documentId, '--state', state, '--json'], { cwd: tmp.dir });
    const actors = (JSON.parse(history.stdout) as { versions: Array<{ actor: string }> }).versions.map((v) => v.actor);
    // Editing writes a version only when it changed the draft.
    expect(actors.filter((a) => a !== 'editing')).toEqual(['orchestrator', 'research', 'writing', 'verification']);
    expect(actors.filter((a) => a === 'editing').length).toBeLessThanOrEqual(1);
  });

  it('resume goes back to the remote agents and the bus the run used, without being told again', async () => {
    const stateUrl = `sqlite:${join(tmp.dir, 'resume.db')}`;
    // A topic the sample notes cover (one they do not now ends below the threshold, exit 3).
    const run = startCli(
      ['run', 'Recovering workflows', '--sources', SOURCES, '--bus', bus, '--agents', 'remote', '--state', stateUrl, '--lease', '500'],
      {
        cwd: tmp.dir,
        env: { CONCORD_TEST_PAUSE_AFTER_STAGE: 'research' },
      },
    );
    const started = await run.waitFor(/starting workflow (wf-\S+)/);
    await run.waitFor(/test pause after stage research/);
    run.child.kill('SIGKILL');
    await run.exited;

    const resumed = await runCli(['resume', started[1]!, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: 'completed' });
    // Served by the agent processes on the recorded bus, not by agents in the resuming process.
    expect(resumed.stderr).toContain(`agents: remote, serving on ${SERVICES.redis.url}?namespace=${namespaces[0]}`);
  });

  it('dlq list and purge work on a shared bus', async () => {
    const list = await runCli(['dlq', 'list', '--bus', bus], { cwd: tmp.dir });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^no dead letters on redis:\/\//);
    expect(JSON.parse((await runCli(['dlq', 'list', '--bus', bus, '--json'], { cwd: tmp.dir })).stdout)).toEqual([]);
    const purge = await runCli(['dlq', 'purge', '--bus', bus], { cwd: tmp.dir });
    expect(purge.stdout).toMatch(/^purged 0 dead letters from redis:\/\//);
    const redrive = await runCli(['dlq', 'redrive', '01NOPE', '--bus', bus], { cwd: tmp.dir });
    expect(redrive.code).toBe(1);
    expect(redrive.stderr).toMatch(/^concord: no dead letter `01NOPE` on redis:\/\//);
  });

  it('an agent stops gracefully on SIGTERM', async () => {
    const extra = startCli(['agent', 'writing', '--bus', bus], { cwd: tmp.dir });
    await extra.waitFor(/agent writing serving on/);
    extra.child.kill('SIGTERM');
    const result = await extra.exited;
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/agent writing stopped after \d+ deliveries/);
  });
});

describe.runIf(redisUp)('remote agents that are not there', () => {
  it('run --agents remote says which agent to start, and how', async () => {
    requireBuild();
    const tmp = tempDir();
    const ns = testNamespace('cli-empty');
    try {
      const bus = `${SERVICES.redis.url}?namespace=${ns}`;
      const result = await runCli(
        ['run', TOPIC, '--sources', SOURCES, '--bus', bus, '--agents', 'remote', '--state', `sqlite:${join(tmp.dir, 'x.db')}`],
        { cwd: tmp.dir },
      );
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toMatch(
        /^concord: no `research` agent is serving on redis:\/\/\S+: start it with `concord agent research --bus redis:\/\/\S+ --sources DIR`$/,
      );
    } finally {
      await cleanupNamespace(ns);
      tmp.cleanup();
    }
  });
});
