import { existsSync, readFileSync } from 'node:fs';
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
  const run = startCli(['run', 'Recovering workflows after a crash', '--sources', SOURCES, '--state', stateUrl, '--out', 'doc.md', '--lease', '500'], { cwd: dir, env });
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

    const list = JSON.parse((await runCli(['workflows', '--json', '--state', stateUrl], { cwd: tmp.dir })).stdout) as Array<{ workflowId: string; status: string; stage: string }>;
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
    const workflowId = await runAndKill(tmp.dir, stateUrl, { CONCORD_TEST_PAUSE_BEFORE_COMPLETE: 'writing' }, /test pause before completing stage writing/);

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
    expect(result.stderr).toMatch(new RegExp(`^concord: interrupted \\(SIGINT\\); continue with: .* resume ${started[1]} --state ${stateUrl}$`, 'm'));
    const resumed = await runCli(['resume', started[1]!, '--state', stateUrl, '--json'], { cwd: tmp.dir });
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: 'completed' });
  });
});
