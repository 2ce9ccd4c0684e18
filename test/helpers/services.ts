import net from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * Real services for integration tests. In `npm test` a service that is down makes its suite
 * skip with a loud line; under CONCORD_REQUIRE_SERVICES=1 (what .ci/run sets) it is a failure.
 */
export const SERVICES = {
  redis: { host: '127.0.0.1', port: 6379, url: 'redis://127.0.0.1:6379/0' },
  postgres: { host: '127.0.0.1', port: 5432, url: 'postgres://postgres@127.0.0.1:5432/test' },
  nats: { host: '127.0.0.1', port: 4222, url: 'nats://127.0.0.1:4222' },
} as const;

export type ServiceName = keyof typeof SERVICES;

function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Resolves true when the service is up. When it is down: throws under CONCORD_REQUIRE_SERVICES=1,
 * otherwise prints a loud line and resolves false (use with `describe.runIf` / `describe.skipIf`).
 */
export async function serviceAvailable(name: ServiceName): Promise<boolean> {
  const { host, port } = SERVICES[name];
  if (await reachable(host, port)) return true;
  const line = `!!! ${name} is not reachable at ${host}:${port}: its integration suite is SKIPPED`;
  if (process.env['CONCORD_REQUIRE_SERVICES'] === '1') {
    throw new Error(`${name} is required (CONCORD_REQUIRE_SERVICES=1) but not reachable at ${host}:${port}`);
  }
  console.warn('\n' + '!'.repeat(line.length) + '\n' + line + '\n' + '!'.repeat(line.length) + '\n');
  return false;
}

/** A namespace unique to this test run, so parallel runs share one server safely. */
export function testNamespace(prefix = 't'): string {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Waits until `check` returns truthy, polling every `intervalMs`; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 5000, intervalMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
