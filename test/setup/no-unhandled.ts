/**
 * The harness rule: an `unhandledRejection` or `uncaughtException` anywhere in a test file fails
 * it. The test running when one is seen fails (or the file's last hook, for one seen after its
 * last test), naming what escaped. A library that lets a rejection escape can kill its user's
 * process, so no test may pass while one does.
 */
import { afterAll, afterEach } from 'vitest';

const escaped: string[] = [];

function describeError(kind: string, err: unknown): string {
  const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  return `${kind}: ${text}`;
}

const onRejection = (reason: unknown): void => {
  escaped.push(describeError('unhandledRejection', reason));
};
const onException = (err: unknown): void => {
  escaped.push(describeError('uncaughtException', err));
};

process.on('unhandledRejection', onRejection);
process.on('uncaughtException', onException);

function failOnEscaped(): void {
  if (escaped.length === 0) return;
  const seen = escaped.splice(0);
  throw new Error(`${seen.length} error(s) escaped to the process (the harness forbids it):\n${seen.join('\n')}`);
}

afterEach(async () => {
  // Rejections are reported after the microtask queue drains: give a just-finished test's one a turn.
  await new Promise((resolve) => setImmediate(resolve));
  failOnEscaped();
});

afterAll(async () => {
  await new Promise((resolve) => setImmediate(resolve));
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
  failOnEscaped();
});
