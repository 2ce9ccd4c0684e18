import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

describe('examples', () => {
  beforeAll(async () => {
    // `npm test` builds first; a bare `vitest run` on a fresh checkout builds here.
    if (!existsSync(`${root}dist/index.js`)) await run('npm', ['run', 'build', '--silent'], { cwd: root, timeout: 180_000 });
  }, 200_000);

  it('quickstart: a task, its RESULT and a STATUS subscription, then a clean exit', async () => {
    const { stdout, stderr } = await run(process.execPath, ['examples/quickstart.mjs'], { cwd: root, timeout: 20_000 });
    expect(stderr).toBe('');
    const lines = stdout.trim().split('\n');
    expect(lines).toContain('status from writer: drafting');
    expect(lines).toContain('planner got a result from writer: Llamas hum when they are curious about the moon.');
    expect(lines.at(-1)).toBe('sent 2 messages and 1 status update');
  });
});
