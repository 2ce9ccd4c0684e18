import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argsOf, requireBuild, runCli, SOURCES, startCli, tempDir, type CliResult } from './helpers.js';

/** A topic half of whose key words the sample notes never use: coverage stays low whatever the writer does. */
const OFF = 'Idempotency keys and quantum chromodynamics';

describe('honest exit codes and status', () => {
  const tmp = tempDir();
  let below: CliResult;

  beforeAll(async () => {
    requireBuild();
    below = await runCli(['run', OFF, '--sources', SOURCES, '--threshold', '0.95', '--max-iterations', '2', '--no-progress'], {
      cwd: tmp.dir,
    });
  });
  afterAll(() => tmp.cleanup());

  it('a run that ends below its threshold exits 3 with one line naming the score and the threshold', () => {
    expect(below.code, below.stdout + below.stderr).toBe(3);
    const lines = below.stderr.split('\n').filter((l) => l.startsWith('concord: '));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^concord: the document did not pass verification: score 0\.\d{2,3} is below the threshold 0\.95 after 1 round$/,
    );
    expect(below.stdout).toMatch(/threshold 0\.95: NOT met/);
    // What was wrong, with the draft version judged, and why no second round ran.
    expect(below.stdout).toMatch(/^Problems verification found in version \d+ \(score 0\.\d\d, threshold 0\.95\):$/m);
    expect(below.stdout).toMatch(
      /^ {2}- topic: the sources do not cover the topic 'Idempotency keys and quantum chromodynamics': 'quantum', 'chromodynamics' appear in none of the \d+ researched passages/m,
    );
    expect(below.stdout).toMatch(/^Revisions stopped after round 1: the sources do not cover the topic, and no rewrite can change that$/m);
  });

  it('concord show prints the verdict on the version shown, and --json carries it', async () => {
    const documentId = /history (doc-\S+)/.exec(below.stdout)?.[1] ?? '';
    const judged = Number(/^Problems verification found in version (\d+)/m.exec(below.stdout)?.[1]);
    const shown = await runCli(['show', documentId, '--version', String(judged)], { cwd: tmp.dir });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^# Idempotency keys and quantum chromodynamics/);
    expect(shown.stderr).toMatch(
      new RegExp(`^verification of version ${judged} \\(round 1\\): score 0\\.\\d\\d, threshold 0\\.95 NOT met, \\d+ problems?$`, 'm'),
    );
    expect(shown.stderr).toMatch(/^ {2}- topic: the sources do not cover the topic/m);
    const json = JSON.parse((await runCli(['show', documentId, '--version', String(judged), '--json'], { cwd: tmp.dir })).stdout) as {
      verification: { draftVersion: number; problems: Array<{ kind: string }> };
    };
    expect(json.verification.draftVersion).toBe(judged);
    expect(json.verification.problems.map((p) => p.kind)).toContain('topic');
  });

  it('--json exits 3 too, with accepted false', async () => {
    const r = await runCli(
      ['run', OFF, '--sources', SOURCES, '--threshold', '0.95', '--max-iterations', '1', '--json', '--state', 'memory://'],
      { cwd: tmp.dir },
    );
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'completed', accepted: false });
  });

  it('concord workflows says whether each run met its threshold', async () => {
    const ok = await runCli(['run', 'Idempotency keys', '--sources', SOURCES, '--words', '200', '--threshold', '0.5', '--no-progress'], {
      cwd: tmp.dir,
    });
    expect(ok.code, ok.stderr).toBe(0);
    const list = await runCli(['workflows'], { cwd: tmp.dir });
    expect(list.stdout).toMatch(/^WORKFLOW\s+STATUS\s+STAGE\s+ITERATION\s+THRESHOLD\s+PROBLEMS\s+SCORES/);
    expect(list.stdout).toMatch(
      /^wf-idempotency-keys-and-quantum\S*\s+completed\s+done\s+1\s+not met \(0\.\d{2,3} < 0\.95\)\s+\d+ \(v\d+\)/m,
    );
    expect(list.stdout).toMatch(/^wf-idempotency-keys-\w+\s+completed\s+done\s+\d\s+met\s/m);
  });

  it('the suggested diff names two versions that differ', async () => {
    // Revised twice (the notes cannot fill 2000 words): later drafts differ from the first.
    const run = await runCli(['demo', '--words', '2000', '--threshold', '0.9', '--no-progress'], { cwd: tmp.dir });
    expect(run.stdout).toMatch(/rounds\s+3 \(2 revisions/);
    const line = /Compare versions:\s+(.*)$/m.exec(run.stdout)?.[1];
    expect(line, run.stdout).toBeDefined();
    const diff = await runCli(argsOf(line!), { cwd: tmp.dir });
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).not.toMatch(/have the same content/);
    expect(diff.stdout).toMatch(/^@@ /m);
  });
});

describe('CONCORD_LOG_LEVEL', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('info prints a line per stage (JSON when stderr is not a terminal)', async () => {
    const r = await runCli(['demo', '--no-progress', '--state', 'memory://'], { cwd: tmp.dir, env: { CONCORD_LOG_LEVEL: 'info' } });
    expect(r.code, r.stderr).toBe(0);
    const entries = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(entries.filter((e) => e.level === 30 && /^stage \w+ done: score/.test(e.msg)).length).toBeGreaterThanOrEqual(4);
    expect(entries.some((e) => e.level < 30)).toBe(false);
  });

  it('verbose means debug; an unknown level is one clear line, not a crash', async () => {
    const verbose = await runCli(['demo', '--no-progress', '--state', 'memory://'], {
      cwd: tmp.dir,
      env: { CONCORD_LOG_LEVEL: 'verbose' },
    });
    expect(verbose.code, verbose.stderr).toBe(0);
    expect(verbose.stderr).toMatch(/"level":20/);
    const bad = await runCli(['demo', '--state', 'memory://'], { cwd: tmp.dir, env: { CONCORD_LOG_LEVEL: 'loud' } });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe(
      'concord: CONCORD_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (or verbose = debug), got `loud`',
    );
  });
});

describe('Ctrl-C', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('stops within a second while research indexes a large folder', async () => {
    const notes = join(tmp.dir, 'notes');
    mkdirSync(notes);
    const paragraph = (i: number, j: number) =>
      `Paragraph ${j} of note ${i} discusses delivery guarantees, leases, retries and idempotent consumers in detail number ${i * 100 + j}.`;
    for (let i = 0; i < 1500; i++) {
      const body = Array.from({ length: 60 }, (_, j) => paragraph(i, j)).join('\n\n');
      writeFileSync(join(notes, `note-${String(i).padStart(4, '0')}.md`), `# Note ${i}\n\n${body}\n`);
    }
    const p = startCli(['run', 'Delivery guarantees', '--sources', notes, '--state', 'memory://'], { cwd: tmp.dir });
    await p.waitFor(/stage research → agent research/);
    // Let indexing get going, then interrupt it.
    await new Promise((r) => setTimeout(r, 300));
    const sent = Date.now();
    p.child.kill('SIGINT');
    const result = await p.exited;
    const took = Date.now() - sent;
    expect(result.stderr).toMatch(/concord: interrupted \(SIGINT\)/);
    expect(result.code).toBe(130);
    expect(took).toBeLessThan(1000);
  }, 60_000);
});
