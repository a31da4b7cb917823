import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { replaceInGuestDirectory } from '../box/provenance.js';
import { BoxbuildError, ExitCode, usageError } from '../errors.js';
import type { RunStarted } from '../runner/options.js';

/** Why no file can be written at `path` (its directory missing or not writable, a directory in its place). */
function unwritable(path: string): string | undefined {
  const dir = dirname(path);
  try {
    if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return `${dir} is no directory`;
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) return 'a directory is in its place';
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    return `cannot write into ${dir} (${(error as NodeJS.ErrnoException).code})`;
  }
  return undefined;
}

/**
 * `--result FILE`: a machine-readable account of the run, written on every path that ends it
 * (the build's status, or boxbuild's own error with its kind): what ran on what, and when.
 */
export class ResultFile {
  private readonly startedAt = new Date();
  private about?: RunStarted;
  private readonly path?: string;

  /** `warn` says that the file could not be written after all (the run's status stands). */
  constructor(
    file: string | undefined,
    private readonly argv: string[],
    private readonly warn: (line: string) => void,
  ) {
    this.path = file === undefined ? undefined : resolve(file);
  }

  /** For RunOptions.onStarted. */
  readonly started = (about: RunStarted) => {
    this.about = about;
  };

  /**
   * Runs `run` and records how it ended; its status or error passes through unchanged. A path that
   * cannot take the file is refused before the run.
   */
  async record(run: () => Promise<number>): Promise<number> {
    if (!this.path) return run();
    const problem = unwritable(this.path);
    if (problem) throw usageError(`--result ${this.path}: ${problem}`);
    try {
      const exitCode = await run();
      await this.write(exitCode);
      return exitCode;
    } catch (error) {
      await this.refused(error);
      throw error;
    }
  }

  /** Records an error that ended the run before (or instead of) `record`, e.g. an unknown option. */
  async refused(error: unknown): Promise<void> {
    if (!this.path) return;
    const failure = error instanceof BoxbuildError ? error : undefined;
    await this.write(failure?.exitCode ?? ExitCode.internal, { kind: failure?.kind ?? 'internal', message: (error as Error).message });
  }

  private async write(exitCode: number, error?: { kind: string; message: string }): Promise<void> {
    const endedAt = new Date();
    const result = {
      exitCode,
      ...(error ? { error } : {}),
      argv: this.argv,
      ...this.about,
      startedAt: this.startedAt.toISOString(),
      endedAt: endedAt.toISOString(),
      durationSeconds: Number(((endedAt.getTime() - this.startedAt.getTime()) / 1000).toFixed(3)),
    };
    try {
      // Yours alone: boxbuild's argv in it may hold --env NAME=VALUE.
      await replaceInGuestDirectory(this.path!, `${JSON.stringify(result, null, 2)}\n`, 0o600);
    } catch (failure) {
      this.warn(`warning: could not write --result ${this.path}: ${(failure as Error).message}`);
    }
  }
}

/** The `--result` a command line names, read without commander: for one commander refused. */
export function resultArgument(args: string[]): string | undefined {
  for (const [index, arg] of args.entries()) {
    if (arg === '--result') return args[index + 1];
    if (arg.startsWith('--result=')) return arg.slice('--result='.length);
  }
  return undefined;
}
