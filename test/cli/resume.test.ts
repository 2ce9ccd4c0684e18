import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StateManager, readWorkflowData, type WorkflowData, type WorkflowState } from '../../src/index.js';
import { requireBuild, runCli, SOURCES, startCli, tempDir } from './helpers.js';
import { citationProblems } from './citations.js';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});
beforeAll(() => requireBuild());

/** Reads a workflow and its document history straight from the SQLite file (no child is running). */
async function inspect(stateUrl: string, workflowId: string): Promise<{ wf: WorkflowState; data: WorkflowData; actors: string[] }> {
  const state = new StateManager({ store: stateUrl });
  try {
    const wf = await state.getWorkflowState(workflowId);
    if (!wf) throw new Error(`no workflow ${workflowId} in ${stateUrl}`);
    const data = readWorkflowData(wf);
    const actors = (await state.getStateHistory(data.documentId)).map((h) => h.actor);
    return { wf, data, actors };
  } finally {
    await state.close();
  }
}

/** Starts `run` paused at `pause` (an env hook), SIGKILLs it there and returns the workflow id. */
async function runAndKill(dir: string, stateUrl: string, env: Record<string, string>, pausedAt: RegExp): Promise<string> {
  // A short run lease, so the killed run's claim on the workflow runs out soon for `resume`.
  const run = startCli(
    ['run', 'Recovering workflows after a crash', '--sources', SOURCES, '--state', stateUrl, '--out', 'doc.md', '--lease', '500'],
    { cwd: dir, env },
  );
  cleanups.push(() => void run.child.kill('SIGKILL'));
  const started = await run.waitFor(/starting workflow (wf-\S+)/);
  await run.waitFor(pausedAt);
  run.child.kill('SIGKILL');
  const result = await run.exited;
  expect(result.signal).toBe('SIGKILL');
  return started[1]!;
}

describe('crash and resume', () => {
  it('a run killed with SIGKILL after a stage completed resumes there; completed stages never run again', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const stateUrl = `sqlite:${join(tmp.dir, 'state.db')}`;
    const workflowId = await runAndKill(tmp.dir, stateUrl, { CONCORD_TEST_PAUSE_AFTER_STAGE: 'writing' }, /test pause after stage writing/);

    const killed = await inspect(stateUrl, workflowId);
    expect(killed.data.status).toBe('running');
    expect(killed.wf.completedStages).toEqual(['research', 'writing']);
    expect(killed.data.runs).toEqual({ research: 1, writing: 1 });
    expect(existsSync(join(tmp.dir, 'doc.md'))).toBe(false);

    const list = JSON.parse((await runCli(['workflows', '--json', '--state', stateUrl], { cwd: tmp.dir })).stdout) as Array<{
      workflowId: string;
      status: string;
      stage: string;
    }>;
    expect(list).toEqual([expect.objectContaining({ workflowId, status: 'running', stage: 'writing' })]);

    const resumed = await runCli(['resume', workflowId, '--state', stateUrl], { cwd: tmp.dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/^resuming workflow/m);
    expect(resumed.stderr).toMatch(/^stage research already complete: skipped$/m);
    expect(resumed.stderr).toMatch(/^stage writing already complete: skipped$/m);
    expect(resumed.stderr).not.toMatch(/^stage (research|writing) → agent/m);
    expect(resumed.stdout).toContain('Document written to doc.md');

    const done = await inspect(stateUrl, workflowId);
    expect(done.data.status).toBe('completed');
    expect(done.data.resumes).toBe(1);
    expect(done.data.runs['research']).toBe(1);
    expect(done.data.runs['writing']).toBe(done.data.iteration);
    expect(done.wf.completedStages).toEqual(['research', 'writing', 'editing', 'verification']);
    // One version per stage and round: nothing was written twice.
    expect(done.actors.filter((a) => a === 'research')).toHaveLength(1);
    expect(done.actors.filter((a) => a === 'writing')).toHaveLength(done.data.iteration);
    // Editing writes a version only in rounds where it changed the text; never two for one round.
    const edits = done.data.steps.filter((st) => st.stage === 'editing' && st.outcome === 'recorded' && typeof st.version === 'number');
    expect(done.actors.filter((a) => a === 'editing')).toHaveLength(edits.length);
    expect(edits.length).toBeLessThanOrEqual(done.data.iteration);
    expect(citationProblems(readFileSync(join(tmp.dir, 'doc.md'), 'utf8'), SOURCES)).toEqual([]);
  });

  it('a run killed after a stage recorded its draft but before it was marked complete does not redo or rewrite it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const stateUrl = `sqlite:${join(tmp.dir, 'state.db')}`;
    // The writing stage records a draft (editing records one only when it changes the text).
    const workflowId = await runAndKill(
      tmp.dir,
      stateUrl,
      { CONCORD_TEST_PAUSE_BEFORE_COMPLETE: 'writing' },
      /test pause before completing stage writing/,
    );

    const killed = await inspect(stateUrl, workflowId);
    expect(killed.wf.stage).toBe('writing');
    expect(killed.wf.completedStages).toEqual(['research']);
    expect(killed.actors).toEqual(['orchestrator', 'research', 'writing']);

    const resumed = await runCli(['resume', workflowId, '--state', stateUrl], { cwd: tmp.dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).not.toMatch(/^stage writing → agent writing \(iteration 1\//m);

    const done = await inspect(stateUrl, workflowId);
    expect(done.data.status).toBe('completed');
    expect(done.data.runs['writing']).toBe(done.data.iteration);
    expect(done.actors.filter((a) => a === 'writing')).toHaveLength(done.data.iteration);
    expect(readFileSync(join(tmp.dir, 'doc.md'), 'utf8')).toMatch(/^# /);
  });

  it('resuming a completed workflow changes nothing', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const stateUrl = `sqlite:${join(tmp.dir, 'state.db')}`;
    const first = await runCli(['run', 'Delivery guarantees', '--sources', SOURCES, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    const { workflowId } = JSON.parse(first.stdout) as { workflowId: string };
    const before = await inspect(stateUrl, workflowId);
    const again = await runCli(['resume', workflowId, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ workflowId, status: 'completed' });
    const after = await inspect(stateUrl, workflowId);
    expect(after.actors).toEqual(before.actors);
    expect(after.data.runs).toEqual(before.data.runs);
  });

  it('Ctrl-C stops a run with exit code 130 and says how to resume it', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const stateUrl = `sqlite:${join(tmp.dir, 'state.db')}`;
    const run = startCli(['run', 'Backpressure', '--sources', SOURCES, '--state', stateUrl], {
      cwd: tmp.dir,
      env: { CONCORD_TEST_PAUSE_AFTER_STAGE: 'research' },
    });
    cleanups.push(() => void run.child.kill('SIGKILL'));
    const started = await run.waitFor(/starting workflow (wf-\S+)/);
    await run.waitFor(/test pause after stage research/);
    run.child.kill('SIGINT');
    const result = await run.exited;
    expect(result.code).toBe(130);
    expect(result.stderr).toMatch(
      new RegExp(`^concord: interrupted \\(SIGINT\\); continue with: .* resume ${started[1]} --state ${stateUrl}$`, 'm'),
    );
    const resumed = await runCli(['resume', started[1]!, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: 'completed' });
  });
});

describe('resume checks what the run recorded, as the run checked it', () => {
  /** Replaces the recorded input of a workflow straight in the state store, as someone with access to it could. */
  async function tamper(stateUrl: string, workflowId: string, input: Record<string, unknown>): Promise<void> {
    const state = new StateManager({ store: stateUrl });
    try {
      await state.updateWorkflowData({ workflowId, data: { input } });
    } finally {
      await state.close();
    }
  }

  it('an edited out, sourcesDir, bus or maxIterations is refused with an error naming it; nothing is read, written or connected', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const stateUrl = `sqlite:${join(tmp.dir, 'state.db')}`;
    const first = await runCli(['run', 'Delivery guarantees', '--sources', SOURCES, '--state', stateUrl, '--out', 'doc.md', '--json'], {
      cwd: tmp.dir,
    });
    expect(first.code, first.stderr).toBe(0);
    const { workflowId } = JSON.parse(first.stdout) as { workflowId: string };
    const recordedInput = (await inspect(stateUrl, workflowId)).data.input;
    const elsewhere = join(tmp.dir, 'elsewhere');
    mkdirSync(elsewhere);
    const aFile = join(tmp.dir, 'a-file.txt');
    writeFileSync(aFile, 'not a directory\n');

    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ out: elsewhere }, /recorded out: .*elsewhere exists and is not a regular file/],
      [
        { out: 'relative.md' },
        /recorded out "relative\.md" is not an absolute path: was the workflow record edited\? Pass --out to choose/,
      ],
      [{ out: 42 }, /recorded out 42 is not an absolute path/],
      [{ out: join(aFile, 'doc.md') }, /recorded out: .*a-file\.txt is not a directory/],
      [{ sourcesDir: aFile }, /recorded sourcesDir: sources directory .*a-file\.txt does not exist or is not a directory/],
      [{ sourcesDir: 'samples/sources' }, /recorded sourcesDir "samples\/sources" is not an absolute path.*--sources/],
      [{ bus: 'redis://127.0.0.1:99999/0' }, /recorded bus: invalid Redis URL/],
      [{ bus: 'postgres://127.0.0.1/db' }, /recorded bus: unsupported backend URL/],
      [
        { bus: 'redis://:hunter2@127.0.0.1:6379/0' },
        /recorded bus "redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0" is not a shared bus URL without a password/,
      ],
      [{ maxIterations: 1e9 }, /recorded maxIterations 1000000000 is not an integer 1\.\.20/],
      [{ threshold: 'high' }, /recorded threshold "high" is not a number between 0 and 1/],
    ];
    for (const [patch, pattern] of cases) {
      await tamper(stateUrl, workflowId, { ...recordedInput, ...patch });
      const resumed = await runCli(['resume', workflowId, '--state', stateUrl, '--json'], { cwd: tmp.dir });
      expect(resumed.code, `${JSON.stringify(patch)}: ${resumed.stderr}`).toBe(1);
      expect(resumed.stderr, JSON.stringify(patch)).toMatch(pattern);
      expect(resumed.stderr).not.toContain('hunter2');
      expect(resumed.stdout).toBe('');
    }
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(existsSync(join(tmp.dir, 'relative.md'))).toBe(false);

    // Flags given to resume replace the recorded values, checked the same way.
    await tamper(stateUrl, workflowId, { ...recordedInput, out: elsewhere, sourcesDir: aFile });
    const refused = await runCli(['resume', workflowId, '--state', stateUrl, '--out', elsewhere, '--sources', SOURCES], { cwd: tmp.dir });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/--out: .*elsewhere exists and is not a regular file/);
    const chosen = await runCli(
      ['resume', workflowId, '--state', stateUrl, '--out', join(tmp.dir, 'chosen.md'), '--sources', SOURCES, '--json'],
      { cwd: tmp.dir },
    );
    expect(chosen.code, chosen.stderr).toBe(0);
    expect(readFileSync(join(tmp.dir, 'chosen.md'), 'utf8')).toMatch(/^# /);

    // The record as the run wrote it resumes as before.
    await tamper(stateUrl, workflowId, recordedInput);
    const again = await runCli(['resume', workflowId, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ workflowId, status: 'completed', out: join(tmp.dir, 'doc.md') });
  }, 120_000); // fifteen CLI processes, one after another
});
