import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { notRun, runBuild } from './build.js';
import type { BuildResult, MatrixBuild, MatrixOptions, MatrixRunner } from './types.js';

/*
 * The builds of a matrix on this host: N slots, each running one build (in its own VM) at a time.
 */

/** What a build's VM needs besides the guest's memory: QEMU itself, boxbuild, the sharing daemons. */
const OVERHEAD_MIB = 256;

/** As many slots as there are cores, and as the free memory holds VMs of the largest box; at least 1. */
export function chooseSlots(host: { cores: number; freeMiB: number }, boxMemoryMiB: number): number {
  return Math.max(1, Math.min(host.cores, Math.floor(host.freeMiB / (boxMemoryMiB + OVERHEAD_MIB))));
}

export interface LocalOptions extends MatrixOptions {
  slots: number;
}

/** A build that could not be run at all (its directory or log not writable): boxbuild's own failure. */
function unrunnable(build: MatrixBuild, startedAt: Date, error: unknown): BuildResult {
  const message = error instanceof BoxbuildError ? error.message : `internal error: ${(error as Error).message}`;
  return { ...notRun(build), status: 'error', error: `boxbuild: error: ${message}`, attempts: 1, startedAt: startedAt.toISOString(), durationSeconds: (Date.now() - startedAt.getTime()) / 1000 };
}

export const runMatrix: MatrixRunner<LocalOptions> = async (builds, options) => {
  const results: BuildResult[] = [];
  let next = 0;
  const runOne = async (build: MatrixBuild): Promise<BuildResult> => {
    if (options.signal.aborted) return notRun(build);
    options.events?.started?.(build);
    const startedAt = new Date();
    const result = await runBuild(build, { dir: join(options.resultsDir, 'builds', build.id), signal: options.signal }).catch((error: unknown) => unrunnable(build, startedAt, error));
    options.events?.ended?.(result);
    return result;
  };
  const slot = async () => {
    while (next < builds.length) {
      const index = next++;
      results[index] = await runOne(builds[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.slots, builds.length) }, slot));
  return results;
};
