import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argsOf, requireBuild, runCli, SOURCES, tempDir, type CliResult } from './helpers.js';
import { citationProblems } from './citations.js';

const DEMO_OUT = join('.concord', 'out', 'reliable-coordination-of-multi-agent-systems.md');

/** The one-line error contract: a single `concord: ...` line on stderr, no stack trace. */
function expectOneLineError(result: CliResult, pattern: RegExp): void {
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, `stderr was:\n${result.stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^concord: /);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

describe('concord demo (what npm start runs)', () => {
  const tmp = tempDir();
  let demo: CliResult;
  let documentId = '';

  beforeAll(async () => {
    requireBuild();
    demo = await runCli(['demo'], { cwd: tmp.dir });
    documentId = /history (doc-\S+)/.exec(demo.stdout)?.[1] ?? '';
  });
  afterAll(() => tmp.cleanup());

  it('writes a cited Markdown document under ./.concord and prints where it is, its scores and the history command', () => {
    expect(demo.code, demo.stderr).toBe(0);
    expect(existsSync(join(tmp.dir, '.concord', 'concord.db'))).toBe(true);
    expect(demo.stdout).toContain(`Document written to ${DEMO_OUT}`);
    const doc = readFileSync(join(tmp.dir, DEMO_OUT), 'utf8');
    expect(doc).toMatch(/^# Reliable coordination of multi-agent systems/);
    expect(doc).toMatch(/^## References$/m);
    expect(demo.stdout).toMatch(/quality\s+verification (0\.\d\d|1\.00) \(threshold 0\.80: met\)/);
    expect(demo.stdout).toMatch(/stages\s+research \d\.\d\d · writing \d\.\d\d · editing \d\.\d\d · verification \d\.\d\d/);
    expect(demo.stdout).toMatch(/See its history:\s+\S.* history doc-\S+/);
    expect(documentId).not.toBe('');
  });

  it('every citation in the produced document resolves to its source file lines', () => {
    const doc = readFileSync(join(tmp.dir, DEMO_OUT), 'utf8');
    expect(citationProblems(doc, SOURCES)).toEqual([]);
  });

  it('the printed history command lists the versions each agent wrote', async () => {
    const line = /See its history:\s+(.*)$/m.exec(demo.stdout)?.[1] ?? '';
    const history = await runCli(argsOf(line), { cwd: tmp.dir });
    expect(history.code, history.stderr).toBe(0);
    // Editing writes a version only when it changed the text (the demo's drafts may need none).
    for (const actor of ['research', 'writing', 'verification']) expect(history.stdout).toMatch(new RegExp(`^\\d+\\s+${actor}\\s+`, 'm'));
    expect(history.stdout).toMatch(/^VERSION\s+ACTOR\s+ACTION\s+TIMESTAMP\s+SUMMARY/);

    const json = await runCli(['history', documentId, '--json'], { cwd: tmp.dir });
    const { versions } = JSON.parse(json.stdout) as {
      versions: Array<{ version: number; actor: string; action: string; summary: string }>;
    };
    expect(versions[0]).toMatchObject({ version: 1, action: 'create' });
    const writing = versions.filter((v) => v.actor === 'writing');
    const editing = versions.filter((v) => v.actor === 'editing');
    expect(writing.length).toBeGreaterThanOrEqual(1);
    expect(editing.length).toBeLessThanOrEqual(writing.length);
    // Every version editing wrote changed the text it was given.
    for (const e of editing) {
      const before = await runCli(['show', documentId, '--version', String(e.version - 1)], { cwd: tmp.dir });
      const after = await runCli(['show', documentId, '--version', String(e.version)], { cwd: tmp.dir });
      expect(after.stdout).not.toBe(before.stdout);
    }
    expect(writing.every((v) => v.action === 'update_content' && /writing, iteration \d+/.test(v.summary))).toBe(true);
    expect(versions.map((v) => v.version)).toEqual(versions.map((_, i) => i + 1));
  });

  it('show prints a version, diff compares two, and both take --json', async () => {
    const history = JSON.parse((await runCli(['history', documentId, '--json'], { cwd: tmp.dir })).stdout) as {
      versions: Array<{ version: number; actor: string }>;
    };
    const firstDraft = history.versions.find((v) => v.actor === 'writing')!.version;
    const latest = history.versions.at(-1)!.version;

    const shown = await runCli(['show', documentId, '--version', String(firstDraft)], { cwd: tmp.dir });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^# Reliable coordination/);
    const final = await runCli(['show', documentId, '--json'], { cwd: tmp.dir });
    expect(JSON.parse(final.stdout)).toMatchObject({ documentId, version: latest });
    expect((JSON.parse(final.stdout) as { content: string }).content.trim()).toBe(readFileSync(join(tmp.dir, DEMO_OUT), 'utf8').trim());

    const diff = await runCli(['diff', documentId, String(firstDraft - 1), String(firstDraft)], { cwd: tmp.dir });
    expect(diff.code).toBe(0);
    expect(diff.stdout).toMatch(new RegExp(`^--- ${documentId}@${firstDraft - 1}`, 'm'));
    expect(diff.stdout).toMatch(new RegExp(`^\\+\\+\\+ ${documentId}@${firstDraft} \\(writing\\)`, 'm'));
    expect(diff.stdout).toMatch(/^@@ -0,0 \+1,\d+ @@$/m);
    expect(diff.stdout).toMatch(/^\+# Reliable coordination/m);
    const diffJson = JSON.parse((await runCli(['diff', documentId, '1', String(latest), '--json'], { cwd: tmp.dir })).stdout) as {
      added: number;
      removed: number;
    };
    expect(diffJson.added).toBeGreaterThan(0);
    expect(diffJson.removed).toBe(0);
  });

  it('workflows and stats report the run', async () => {
    const workflows = await runCli(['workflows'], { cwd: tmp.dir });
    expect(workflows.stdout).toMatch(/^WORKFLOW\s+STATUS\s+STAGE\s+ITERATION\s+THRESHOLD\s+PROBLEMS\s+SCORES/);
    expect(workflows.stdout).toMatch(/wf-\S+\s+completed\s+done\s+\d+\s+met\s+\d+(?: \(v\d+\))?\s+research \d\.\d\d/);
    const list = JSON.parse((await runCli(['workflows', '--json'], { cwd: tmp.dir })).stdout) as Array<Record<string, unknown>>;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ status: 'completed', documentId, completedStages: ['research', 'writing', 'editing', 'verification'] });
    const stats = JSON.parse((await runCli(['stats', '--json'], { cwd: tmp.dir })).stdout) as Record<string, unknown>;
    expect(stats).toMatchObject({ documents: 1, workflows: 1, workflowsByStatus: { completed: 1 }, latestDocument: documentId });
    expect((await runCli(['stats'], { cwd: tmp.dir })).stdout).toMatch(/^documents\s+1$/m);
  });
});

describe('concord run', () => {
  it('writes to --out, honours --state and prints JSON with --json', async () => {
    requireBuild();
    const tmp = tempDir();
    try {
      const result = await runCli(
        [
          'run',
          'Idempotency and retries',
          '--sources',
          SOURCES,
          '--words',
          '300',
          '--out',
          'doc.md',
          '--state',
          `sqlite:${join(tmp.dir, 'x.db')}`,
          '--json',
          '--no-progress',
        ],
        { cwd: tmp.dir },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe('');
      const outcome = JSON.parse(result.stdout) as {
        status: string;
        out: string;
        documentId: string;
        scores: Record<string, number>;
        historyCommand: string;
      };
      expect(outcome.status).toBe('completed');
      expect(outcome.out).toBe(join(tmp.dir, 'doc.md'));
      expect(outcome.historyCommand).toContain(`--state sqlite:${join(tmp.dir, 'x.db')}`);
      expect(citationProblems(readFileSync(join(tmp.dir, 'doc.md'), 'utf8'), SOURCES)).toEqual([]);
      expect(existsSync(join(tmp.dir, '.concord'))).toBe(false);
    } finally {
      tmp.cleanup();
    }
  });

  it('prints plain progress lines when stderr is not a terminal', async () => {
    const tmp = tempDir();
    try {
      const result = await runCli(['run', 'Observability of agents', '--sources', SOURCES, '--state', `sqlite:${join(tmp.dir, 'x.db')}`], {
        cwd: tmp.dir,
      });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/^starting workflow wf-\S+ \(document doc-\S+\): research → writing → editing → verification$/m);
      expect(result.stderr).toMatch(/^stage research → agent research \(iteration 1\/3\)$/m);
      expect(result.stderr).toMatch(/^stage verification done: score \d\.\d\d, document version \d+$/m);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: an ANSI escape is exactly what must not appear
      expect(result.stderr).not.toMatch(/\r|\x1b\[/);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('errors are one line and a non-zero exit code', () => {
  const tmp = tempDir();
  const state = () => `sqlite:${join(tmp.dir, 'state.db')}`;
  beforeAll(async () => {
    requireBuild();
    // A state with one run in it, for the unknown-id cases.
    const r = await runCli(['run', 'Shared state', '--sources', SOURCES, '--state', state(), '--no-progress', '--json'], { cwd: tmp.dir });
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(() => tmp.cleanup());

  const cases: Array<[string, () => string[], number, RegExp]> = [
    ['an unknown command', () => ['frobnicate'], 2, /unknown command 'frobnicate'/],
    ['a missing option', () => ['run', 'a topic'], 2, /--sources/],
    [
      'a bad number',
      () => ['run', 'a topic', '--sources', SOURCES, '--words', 'many'],
      2,
      /--words must be an integer 50\.\.20000, got `many`/,
    ],
    ['a bad choice', () => ['run', 'a topic', '--sources', SOURCES, '--agents', 'elsewhere'], 2, /--agents/],
    ['a bad version', () => ['show', 'doc-x', '--version', '0', '--state', state()], 2, /--version must be an integer/],
    [
      'a missing sources directory',
      () => ['run', 'a topic', '--sources', join(tmp.dir, 'nope')],
      1,
      /sources directory .*nope does not exist/,
    ],
    ['an unknown document', () => ['history', 'doc-nope', '--state', state()], 1, /no document `doc-nope`/],
    ['an unknown document version', () => ['diff', 'doc-nope', '1', '2', '--state', state()], 1, /no document `doc-nope`/],
    ['an unknown workflow', () => ['resume', 'wf-nope', '--state', state()], 1, /no workflow `wf-nope`/],
    ['no state yet', () => ['workflows', '--state', `sqlite:${join(tmp.dir, 'empty', 'x.db')}`], 1, /no state at .*x\.db/],
    [
      'an unsupported URL',
      () => ['stats', '--state', 'postgres://u@localhost/db'],
      1,
      /unsupported backend URL `postgres:\/\/u@localhost\/db`/,
    ],
    ['an unreachable state store', () => ['history', 'doc-x', '--state', 'redis://127.0.0.1:1'], 1, /redis:\/\/127\.0\.0\.1:1/],
    [
      'an unreachable bus',
      () => ['run', 'a topic', '--sources', SOURCES, '--state', state(), '--bus', 'redis://127.0.0.1:1'],
      1,
      /redis:\/\/127\.0\.0\.1:1/,
    ],
    ['dlq on a memory bus', () => ['dlq', 'list'], 1, /dlq needs a shared bus.*memory:\/\//],
    ['an agent on a memory bus', () => ['agent', 'writing'], 1, /needs a bus shared between processes/],
    [
      'an unknown agent',
      () => ['agent', 'poet', '--bus', 'redis://127.0.0.1:1'],
      1,
      /unknown agent `poet`: expected one of research, writing, editing, verification/,
    ],
    [
      'remote agents on a memory bus',
      () => ['run', 'a topic', '--sources', SOURCES, '--agents', 'remote'],
      1,
      /--agents remote needs a bus shared between processes/,
    ],
  ];

  it.each(cases)('%s', async (_name, args, code, pattern) => {
    const result = await runCli(args(), { cwd: tmp.dir, timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(code);
    expectOneLineError(result, pattern);
    expect(result.stdout).toBe('');
  });

  it('CONCORD_DEBUG=1 adds the stack trace', async () => {
    const result = await runCli(['history', 'doc-nope', '--state', state()], { cwd: tmp.dir, env: { CONCORD_DEBUG: '1' } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^concord: no document `doc-nope`$/m);
    expect(result.stderr).toMatch(/^\s+at /m);
  });
});
