import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Type tests (test/*.test-d.ts: expectTypeOf, @ts-expect-error) run through tsc with the rest.
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
    // Any unhandledRejection or uncaughtException fails the test file (see the file).
    setupFiles: ['test/setup/no-unhandled.ts', 'test/setup/backends.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // 2-core machines: keep parallel files modest so timing-sensitive lease tests stay honest.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
