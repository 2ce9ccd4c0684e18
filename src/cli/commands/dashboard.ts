import type { Command } from 'commander';
import { integer } from '../options.js';
import { busUrl, openBus, openState, stateUrl } from '../runtime.js';

interface DashboardFlags {
  bus?: string;
  state?: string;
  port: number;
  host: string;
  token?: string;
}

/** `concord dashboard`: the live web dashboard and `/metrics`, until SIGTERM or Ctrl-C. */
export function registerDashboardCommand(program: Command): void {
  program
    .command('dashboard')
    .description('serve a live dashboard (agents, messages, leases, dead letters, documents, workflows) and /metrics')
    .option('--bus <url>', 'the bus to watch: redis://host:6379/0 shows every process (default: $CONCORD_BUS, memory://)')
    .option('--state <url>', 'the state to show (default: sqlite:./.concord/concord.db, or $CONCORD_STATE)')
    .option('--port <n>', 'port to listen on (0 = any free port)', integer('--port', 0, 65_535), 4000)
    .option('--host <host>', 'address to bind (default 127.0.0.1: this machine only)', '127.0.0.1')
    .option('--token <token>', 'the token redrive and purge require (default: a random one, printed at start)')
    .action(async (flags: DashboardFlags) => {
      const { startDashboard } = await import('../../dashboard/server.js');
      const state = await openState(stateUrl(flags.state), { create: true });
      const bus = await openBus(busUrl(flags.bus)).catch(async (err: unknown) => {
        await state.close();
        throw err;
      });
      const server = await startDashboard({
        bus: bus.bus,
        transport: bus.transport,
        state: { manager: state.state, store: state.store },
        port: flags.port,
        host: flags.host,
        ...(flags.token !== undefined ? { token: flags.token } : {}),
      }).catch(async (err: unknown) => {
        await bus.close();
        await state.close();
        throw err;
      });
      process.stdout.write(`concord dashboard on ${server.url} (bus ${bus.transport.url}, state ${state.url})\n`);
      process.stdout.write(`token for redrive and purge: ${server.token}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
      await bus.close();
      await state.close();
    });
}
