import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerAgentCommand } from './commands/agent.js';
import { registerDashboardCommand } from './commands/dashboard.js';
import { registerDlqCommands } from './commands/dlq.js';
import { registerInspectCommands } from './commands/inspect.js';
import { registerMcpCommand } from './commands/mcp.js';
import { registerRunCommands } from './commands/run.js';
import { packageRoot } from './runtime.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(resolve(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Exit code of a usage error (bad option, missing argument, unknown command). */
export const EXIT_USAGE = 2;
/** Exit code of any other failure. */
export const EXIT_FAILURE = 1;

/** The `concord` command tree. Commander errors are thrown (not exited) so `runCli` decides the exit code. */
export function buildProgram(): Command {
  const program = new Command('concord');
  program
    .description('Concord: a message bus and a versioned state manager for multi-agent systems')
    .version(version(), '-V, --version')
    .exitOverride()
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .configureOutput({
      // One line per usage error, in the same `concord: ...` form as every other error.
      outputError: (text, write) =>
        write(
          `concord: ${text
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()}\n`,
        ),
    })
    .addHelpText(
      'after',
      `
Examples:
  concord demo                                   write a cited document from the bundled samples
  concord run "Event sourcing" --sources ./notes --words 500
  concord history <documentId>                   every version, by agent
  concord diff <documentId> 3 5                  what changed between two versions
  concord resume <workflowId>                    continue a run that was killed or failed
  concord agent writing --bus redis://127.0.0.1:6379/0   one agent as its own process

Environment: CONCORD_STATE, CONCORD_BUS (default URLs), CONCORD_LOG_LEVEL (pino level, logs on stderr),
CONCORD_DEBUG=1 (stack traces on errors).`,
    );
  registerRunCommands(program);
  registerAgentCommand(program);
  registerInspectCommands(program);
  registerDlqCommands(program);
  registerMcpCommand(program);
  registerDashboardCommand(program);
  return program;
}

/** Prints an error as one line (a stack too under CONCORD_DEBUG=1) and returns the exit code. */
export function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander printed it (or printed help/version, exit code 0).
    return err.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  const message = err instanceof Error ? err.message : String(err);
  const line =
    message
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' ') || (err instanceof Error ? err.name : 'unknown error');
  process.stderr.write(`concord: ${line}\n`);
  if (process.env['CONCORD_DEBUG'] === '1' && err instanceof Error && err.stack) {
    process.stderr.write(err.stack + '\n');
    if (err.cause) process.stderr.write(`cause: ${String((err.cause as Error).stack ?? err.cause)}\n`);
  }
  return EXIT_FAILURE;
}

/** Runs the CLI on `argv` (as `process.argv`) and resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
}
