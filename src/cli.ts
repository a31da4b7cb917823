#!/usr/bin/env node
import { CommanderError } from 'commander';
import { BoxbuildError, ExitCode } from './errors.js';
import { commandLine } from './cli/program.js';
import { refuseNonUtf8Arguments } from './util/argv.js';

/** Set when stdout or stderr was closed by their reader. */
let outputClosed = false;
/** Set when stdout or stderr could not be written otherwise (ENOSPC, EIO): the run's end, said once. */
let outputFailed: BoxbuildError | undefined;

async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  // A closed stdout or stderr (`boxbuild … | head`) ends the run as SIGPIPE ends a shell tool: quietly,
  // status 141. Any other write error ends it too, with one line (exit 74). Later errors add nothing.
  for (const [name, stream] of [['stdout', process.stdout], ['stderr', process.stderr]] as const) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (outputClosed || outputFailed) return;
      if (error.code === 'EPIPE') {
        outputClosed = true;
        controller.abort('SIGPIPE');
      } else {
        outputFailed = new BoxbuildError('ioError', `cannot write the output (${name}): ${error.message}`, { cause: error });
        controller.abort(outputFailed);
      }
    });
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      const code = signal === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated;
      // The first signal stops the VM and cleans up; a second one leaves at once.
      if (controller.signal.aborted) process.exit(code);
      controller.abort(signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
    });
  }
  try {
    refuseNonUtf8Arguments(argv);
    return await commandLine(argv, controller.signal);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : ExitCode.usage;
    if (error instanceof BoxbuildError) {
      if (error.exitCode === ExitCode.brokenPipe) return error.exitCode;
      if (outputFailed) return outputFailed.exitCode; // the run's end came from it: said once, at the end
      process.stderr.write(`boxbuild: error: ${error.message}\n`);
      if (error.detail) process.stderr.write(`${error.detail.replace(/^/gm, '  ')}\n`);
      return error.exitCode;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`boxbuild: internal error: ${message}\n`);
    if (process.env.BOXBUILD_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return ExitCode.internal;
  }
}

const status = await main(process.argv.slice(2));
// Whatever the run ended with, an output that failed is its end (the stream may be stderr itself).
const verdict = () => (process.exitCode = outputClosed ? ExitCode.brokenPipe : outputFailed ? ExitCode.ioError : status);
verdict();
// A write error surfaces after its write (next tick): said once nothing else is left to do.
process.once('beforeExit', () => {
  if (outputFailed) process.stderr.write(`boxbuild: error: ${outputFailed.message}\n`);
  verdict();
});
