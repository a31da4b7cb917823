import { resolve } from 'node:path';
import { replaceInGuestDirectory } from '../box/provenance.js';
import { BoxbuildError, ExitCode } from '../errors.js';
import type { RunStarted } from '../runner/session.js';

/**
 * `--result FILE`: a machine-readable account of the run, written on every path that ends it
 * (the build's status, or boxbuild's own error with its kind): what ran on what, and when.
 */
export class ResultFile {
  private readonly startedAt = new Date();
  private about?: RunStarted;
  private readonly path?: string;

  constructor(file: string | undefined, private readonly argv: string[]) {
    this.path = file === undefined ? undefined : resolve(file);
  }

  /** For RunOptions.onStarted. */
  readonly started = (about: RunStarted) => {
    this.about = about;
  };

  /** Runs `run` and records how it ended; its status or error passes through unchanged. */
  async record(run: () => Promise<number>): Promise<number> {
    if (!this.path) return run();
    try {
      const exitCode = await run();
      await this.write(exitCode);
      return exitCode;
    } catch (error) {
      const failure = error instanceof BoxbuildError ? error : undefined;
      await this.write(failure?.exitCode ?? ExitCode.internal, { kind: failure?.kind ?? 'internal', message: (error as Error).message });
      throw error;
    }
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
    // Yours alone: boxbuild's argv in it may hold --env NAME=VALUE.
    await replaceInGuestDirectory(this.path!, `${JSON.stringify(result, null, 2)}\n`, 0o600);
  }
}
