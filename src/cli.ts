#!/usr/bin/env node
import { CommanderError } from 'commander';
import { BoxbuildError, ExitCode } from './errors.js';
import { commandLine } from './cli/program.js';
import { refuseNonUtf8Arguments } from './util/argv.js';

/** Set when stdout or stderr was closed by their reader. */
let outputClosed = false;

async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  // A closed stdout or stderr (`boxbuild … | head`) ends the run as SIGPIPE ends a shell tool: quietly, status 141.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      outputClosed = true;
      process.exitCode = ExitCode.brokenPipe;
      controller.abort('SIGPIPE');
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
process.exitCode = outputClosed ? ExitCode.brokenPipe : status;
