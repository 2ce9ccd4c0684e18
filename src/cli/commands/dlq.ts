import type { Command } from 'commander';
import { ValidationError } from '../../errors.js';
import { json, table, timestamp } from '../format.js';
import { withJson } from '../options.js';
import { busUrl, isSharedBus, openBus, type OpenBus } from '../runtime.js';

interface BusFlags {
  bus?: string;
  json?: boolean;
}

/** Opens the bus the dead letters live on; a memory bus has none worth showing. */
async function withBusOpen<T>(flags: BusFlags, fn: (b: OpenBus) => Promise<T>): Promise<T> {
  const url = busUrl(flags.bus);
  if (!isSharedBus(url)) {
    throw new ValidationError(
      'dlq needs a shared bus (--bus redis://host:6379/0 or $CONCORD_BUS): the dead letters of a memory:// bus live and die inside the process that ran it',
      { field: 'bus' },
    );
  }
  const b = await openBus(url);
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

/** `dlq list | redrive <id> | purge`. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('inspect and act on the dead-letter queue of a shared bus');
  const busOption = (cmd: Command) => cmd.option('--bus <url>', 'the shared bus, e.g. redis://127.0.0.1:6379/0 (or $CONCORD_BUS)');

  withJson(busOption(dlq.command('list').description('list dead letters, oldest first'))).action(async (flags: BusFlags) => {
    await withBusOpen(flags, async ({ bus, transport }) => {
      const letters = await bus.getDeadLetters();
      if (flags.json) {
        out(json(letters));
        return;
      }
      if (letters.length === 0) {
        out(`no dead letters on ${transport.url}`);
        return;
      }
      out(
        table(
          ['MESSAGE', 'QUEUE', 'TYPE', 'SENDER', 'REASON', 'ATTEMPTS', 'DEAD AT', 'ERROR'],
          letters.map((l) => [
            l.message.id,
            l.queue,
            l.message.type,
            l.message.sender,
            l.reason,
            String(l.attempts),
            timestamp(l.deadAt),
            (l.error ?? '').split('\n')[0]?.slice(0, 80) ?? '',
          ]),
        ),
      );
    });
  });

  busOption(dlq.command('redrive').description('put a dead letter back on its queue').argument('<messageId>', 'the dead message')).action(
    async (id: string, flags: BusFlags) => {
      await withBusOpen(flags, async ({ bus, transport }) => {
        const message = await bus.redrive(id);
        if (!message) throw new ValidationError(`no dead letter \`${id}\` on ${transport.url}`, { field: 'messageId' });
        out(`redrove ${id} to ${message.recipient}`);
      });
    },
  );

  busOption(dlq.command('purge').description('delete every dead letter')).action(async (flags: BusFlags) => {
    await withBusOpen(flags, async ({ bus, transport }) => {
      const n = await bus.purgeDeadLetters();
      out(`purged ${n} dead letter${n === 1 ? '' : 's'} from ${transport.url}`);
    });
  });
}
