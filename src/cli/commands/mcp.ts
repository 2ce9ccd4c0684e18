import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ValidationError } from '../../errors.js';
import { validateAgentName } from '../../bus/agent.js';
import { integer, withState } from '../options.js';
import { busUrl, cliLogger, isSharedBus, openBus, openState, packageRoot, stateUrl, type OpenBus, type OpenState } from '../runtime.js';

interface McpFlags {
  agent: string;
  bus?: string;
  state?: string;
  http?: number;
  lease?: number;
}

const SDK = '@modelcontextprotocol/sdk';

/** The MCP modules, loaded only by `concord mcp`: the SDK is an optional peer dependency. */
async function loadMcp() {
  try {
    const [mcp, stdio] = await Promise.all([import('../../mcp/index.js'), import('@modelcontextprotocol/sdk/server/stdio.js')]);
    return { ...mcp, StdioServerTransport: stdio.StdioServerTransport };
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(SDK)) {
      throw new Error(`concord mcp needs the optional dependency ${SDK}: install it with \`npm install ${SDK}\``, { cause: err });
    }
    throw err;
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(resolve(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Resolves with the signal or event that should stop the server. */
function stopRequested(stdio: boolean): Promise<string> {
  return new Promise((done) => {
    process.once('SIGINT', () => done('SIGINT'));
    process.once('SIGTERM', () => done('SIGTERM'));
    // Over stdio the client owns the process: it ends stdin when it disconnects.
    if (stdio) process.stdin.once('end', () => done('the client closed stdin'));
  });
}

/**
 * `concord mcp --agent NAME`: an MCP server (stdio, or Streamable HTTP on 127.0.0.1 with --http)
 * through which an LLM client acts as agent NAME on a shared bus and edits the shared state.
 * Stdout belongs to the MCP protocol in stdio mode: everything else goes to stderr.
 */
export function registerMcpCommand(program: Command): void {
  withState(
    program
      .command('mcp')
      .description(
        'serve an MCP server through which an LLM client acts as an agent on a shared bus (stdio, or Streamable HTTP with --http)',
      )
      .requiredOption('--agent <name>', 'the agent name the client acts as (its queue, and the sender of what it sends)')
      .option('--bus <url>', 'shared message bus, e.g. redis://127.0.0.1:6379/0?namespace=app (or $CONCORD_BUS)')
      .option(
        '--http <port>',
        'serve Streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio (0: any free port)',
        integer('--http', 0, 65_535),
      )
      .option(
        '--lease <ms>',
        'default lease of a received message before it is delivered again (default 60000)',
        integer('--lease', 100, 86_400_000),
      ),
  ).action(async (flags: McpFlags) => {
    const agent = validateAgentName(flags.agent);
    const busAt = busUrl(flags.bus);
    if (!isSharedBus(busAt)) {
      throw new ValidationError(
        'concord mcp needs a bus shared between processes (--bus redis://host:6379/0): on a memory:// bus no other agent could reach it',
        { field: 'bus' },
      );
    }
    const mcp = await loadMcp();
    let state: OpenState | undefined;
    let bus: OpenBus | undefined;
    const close = async () => {
      await bus?.close().catch(() => {});
      await state?.close().catch(() => {});
    };
    const leases = new mcp.LeasedDeliveries();
    let stop: () => Promise<void>;
    const stdio = flags.http === undefined;
    try {
      state = await openState(stateUrl(flags.state), { create: true });
      bus = await openBus(busAt, {
        state: state.state,
        logger: cliLogger('warn'),
        ...(flags.lease !== undefined ? { leaseMs: flags.lease } : {}),
      });
      bus.bus.registerAgent(agent);
      await bus.bus.ready();
      const options = { agent, bus: bus.bus, state: state.state, leases, register: false, version: packageVersion() };
      if (stdio) {
        const server = mcp.createMcpServer(options);
        await server.connect(new mcp.StdioServerTransport());
        stop = () => server.close();
        process.stderr.write(`concord mcp: agent ${agent} on ${bus.transport.url}, serving MCP on stdio (pid ${process.pid})\n`);
      } else {
        const http = await mcp.serveMcpHttp({ port: flags.http as number, createServer: () => mcp.createMcpServer(options) });
        stop = () => http.close();
        process.stdout.write(`concord mcp: agent ${agent} on ${bus.transport.url}, serving MCP on ${http.url} (pid ${process.pid})\n`);
      }
    } catch (err) {
      await close();
      throw err;
    }
    const why = await stopRequested(stdio);
    process.stderr.write(`concord mcp: stopping (${why}); held messages go back to the queue\n`);
    await leases.releaseAll();
    await stop().catch(() => {});
    await close();
  });
}
