import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuild, runCli, tempDir } from './helpers.js';

/** What the CLI prints about backend URLs never holds their secrets, whether they parse or not. */
describe('concord CLI: URLs it prints are redacted', () => {
  const secret = 'hunter2-s3cret';
  let dir: { dir: string; cleanup: () => void };
  beforeAll(() => {
    requireBuild();
    dir = tempDir();
  });
  afterAll(() => dir.cleanup());

  it.each([
    ['an unsupported scheme', ['stats', '--state', `rediss+x://:${secret}@127.0.0.1:6380/0`]],
    ['a port out of range', ['stats', '--state', `rediss://user:${secret}@127.0.0.1:99999/0`]],
    ['a bus port out of range', ['dlq', 'list', '--bus', `redis://:${secret}@127.0.0.1:99999/0`]],
    ['an unreachable server', ['dlq', 'list', '--bus', `redis://:${secret}@127.0.0.1:1/0?connectTimeout=300`]],
    ['a secret in the query', ['dlq', 'list', '--bus', `redis://127.0.0.1:1/0?connectTimeout=300&password=${secret}`]],
  ])('%s', async (_, args) => {
    const r = await runCli(args, { cwd: dir.dir, timeoutMs: 20_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr.length).toBeGreaterThan(0);
    expect(r.stdout + r.stderr).not.toContain(secret);
    expect(r.stderr).toContain('***');
  });
});
