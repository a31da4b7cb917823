import { type Options, type ResultPromise, execa } from 'execa';
import { CLI, TEST_CACHE } from './env.js';

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Starts the real boxbuild CLI (dist/cli.js) with the test box cache. */
export function startCli(args: string[], options: Options = {}): ResultPromise {
  return execa(process.execPath, [CLI, ...args], {
    reject: false,
    stdin: 'ignore',
    ...options,
    env: { BOXBUILD_CACHE_DIR: TEST_CACHE, ...options.env },
  });
}

export async function runCli(args: string[], options: Options = {}): Promise<CliResult> {
  const result = await startCli(args, options);
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}
