#!/usr/bin/env node
/**
 * The `concord` command. Every failure ends as one line `concord: <what went wrong>` and a
 * non-zero exit code (2 for usage errors); CONCORD_DEBUG=1 adds the stack trace.
 */
import { reportError, runCli } from './program.js';

// Errors that escape every await (a driver emitting 'error' with no listener, a rejected promise
// nobody awaited) still end as one line, not a stack trace.
process.on('uncaughtException', (err) => process.exit(reportError(err)));
process.on('unhandledRejection', (err) => process.exit(reportError(err)));

const code = await runCli(process.argv);
process.exit(code);
