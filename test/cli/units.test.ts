import { describe, expect, it } from 'vitest';
import { diffStat, unifiedDiff } from '../../src/state/diff.js';
import { createProgress } from '../../src/cli/progress.js';
import { table } from '../../src/cli/format.js';
import { logLevel, prettyLogLine } from '../../src/cli/runtime.js';
import type { WorkflowEvent } from '../../src/index.js';

/** A stand-in for process.stderr that records what is written. */
function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text(): string } {
  let text = '';
  return {
    isTTY,
    columns: 120,
    write(chunk: string) {
      text += chunk;
      return true;
    },
    text: () => text,
  } as unknown as NodeJS.WriteStream & { text(): string };
}

const events: WorkflowEvent[] = [
  { type: 'workflow_started', workflowId: 'wf-1', documentId: 'doc-1', resumed: false, stages: ['research', 'writing'] },
  { type: 'stage_started', stage: 'research', agent: 'research', iteration: 1, attempt: 1 },
  { type: 'stage_completed', stage: 'research', agent: 'research', iteration: 1, score: 0.9, version: 2 },
  { type: 'revision', stage: 'verification', to: 'writing', fromIteration: 1, score: 0.7, threshold: 0.8, problems: 2 },
  { type: 'stage_started', stage: 'writing', agent: 'writing', iteration: 2, attempt: 1 },
];

describe('unifiedDiff', () => {
  it('prints hunks with context like diff -u', () => {
    const a = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'].join('\n') + '\n';
    const b = a.replace('two', 'TWO').replace('nine\n', '');
    expect(unifiedDiff(a, b, { fromLabel: 'v1', toLabel: 'v2', context: 1 })).toBe(
      ['--- v1', '+++ v2', '@@ -1,3 +1,3 @@', ' one', '-two', '+TWO', ' three', '@@ -8,3 +8,2 @@', ' eight', '-nine', ' ten', ''].join(
        '\n',
      ),
    );
  });

  it('merges nearby changes into one hunk and handles empty sides', () => {
    expect(unifiedDiff('a\nb\nc\n', 'a\nB\nC\n', { context: 3 }).match(/^@@/gm)).toHaveLength(1);
    expect(unifiedDiff('', 'x\ny\n')).toBe('--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n');
    expect(unifiedDiff('x\n', '')).toBe('--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n');
    expect(unifiedDiff('same\n', 'same\n')).toBe('');
    expect(diffStat('a\nb\n', 'a\nc\nd\n')).toEqual({ added: 2, removed: 1 });
  });
});

describe('progress display', () => {
  it('prints one plain line per event when not on a terminal', () => {
    const stream = fakeStream(false);
    const progress = createProgress({ stream, messages: () => 7, maxIterations: 3 });
    for (const e of events) progress.handle(e);
    progress.stop();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: an ANSI escape is exactly what must not appear
    expect(stream.text()).not.toMatch(/\r|\x1b/);
    expect(stream.text().trim().split('\n')).toEqual([
      'starting workflow wf-1 (document doc-1): research → writing',
      'stage research → agent research (iteration 1/3)',
      'stage research done: score 0.90, document version 2',
      'verification scored 0.70 < 0.80: 2 problems sent back to writing (iteration 2/3)',
      'stage writing → agent writing (iteration 2/3)',
    ]);
  });

  it('redraws a live line with stage, iteration and messages on a terminal', () => {
    const stream = fakeStream(true);
    const before = process.env['CI'];
    delete process.env['CI'];
    try {
      const progress = createProgress({ stream, messages: () => 7, maxIterations: 3 });
      for (const e of events) progress.handle(e);
      progress.stop();
    } finally {
      if (before !== undefined) process.env['CI'] = before;
    }
    expect(stream.text()).toContain('\r\x1b[2K');
    expect(stream.text()).toMatch(/writing \(writing\) · iteration 2\/3 · 7 messages · /);
    expect(stream.text()).toContain('✓ stage research done: score 0.90');
    // Stopping clears the live line.
    expect(stream.text().endsWith('\r\x1b[2K')).toBe(true);
  });
});

describe('table', () => {
  it('pads every column but the last', () => {
    expect(
      table(
        ['A', 'BB'],
        [
          ['xxx', 'y'],
          ['z', 'long value'],
        ],
      ),
    ).toBe('A    BB\nxxx  y\nz    long value');
  });
});

describe('streamed model tokens in the progress display', () => {
  it('plain: the text as it comes, then how many pieces were streamed', () => {
    const stream = fakeStream(false);
    const progress = createProgress({ stream, messages: () => 1, maxIterations: 3, model: 'qwen@127.0.0.1:11434' });
    progress.handle({ type: 'stage_started', stage: 'writing', agent: 'writing', iteration: 1, attempt: 1 });
    for (const t of ['# Ti', 'tle\n', 'Body']) progress.token('writing', t);
    progress.handle({ type: 'stage_completed', stage: 'writing', agent: 'writing', iteration: 1, score: 1, version: 3 });
    expect(stream.text().split('\n')).toEqual([
      'stage writing → agent writing (iteration 1/3)',
      'writing ← qwen@127.0.0.1:11434: # Title',
      'Body',
      'writing ← qwen@127.0.0.1:11434: 3 tokens streamed',
      'stage writing done: score 1.00, document version 3',
      '',
    ]);
  });

  it('plain: text forwarded by an agent process shows the same way, under its model and with its token count', () => {
    const stream = fakeStream(false);
    // A run with --agents remote has no model of its own: the chunks name theirs.
    const progress = createProgress({ stream, messages: () => 1, maxIterations: 3 });
    progress.token('writing', '# Ti', { model: 'qwen@10.0.0.5:11434', tokens: 2 });
    progress.token('writing', 'tle', { model: 'qwen@10.0.0.5:11434', tokens: 3 });
    progress.stop();
    expect(stream.text().split('\n')).toEqual([
      'writing ← qwen@10.0.0.5:11434: # Title',
      'writing ← qwen@10.0.0.5:11434: 5 tokens streamed',
      '',
    ]);
  });

  it('live: the tail of the stream on the live line', () => {
    const stream = fakeStream(true);
    const before = process.env['CI'];
    delete process.env['CI'];
    try {
      const progress = createProgress({ stream, messages: () => 1, maxIterations: 3, model: 'qwen@host' });
      progress.handle({ type: 'stage_started', stage: 'writing', agent: 'writing', iteration: 1, attempt: 1 });
      progress.token('writing', 'Leases expire\nafter a while');
      progress.stop();
    } finally {
      if (before !== undefined) process.env['CI'] = before;
    }
    expect(stream.text()).toContain('qwen@host: …Leases expire after a while');
  });
});

describe('log levels and lines', () => {
  it('takes pino levels in any case and the usual aliases, and refuses the rest', () => {
    expect(logLevel('INFO')).toBe('info');
    expect(logLevel('verbose')).toBe('debug');
    expect(logLevel('warning')).toBe('warn');
    expect(() => logLevel('loud')).toThrow(
      /CONCORD_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent \(or verbose = debug\), got `loud`/,
    );
  });

  it('renders a JSON log line readably for a terminal', () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.UTC(2026, 0, 2, 3, 4, 5),
      pid: 1,
      hostname: 'h',
      msg: 'stage research done',
      stage: 'research',
      note: 'two words',
    });
    expect(prettyLogLine(line)).toBe('03:04:05 INFO  stage research done  stage=research note="two words"');
  });
});
