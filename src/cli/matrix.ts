import { availableParallelism, freemem } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { cacheRoot } from '../box/cache.js';
import { ExitCode, usageError } from '../errors.js';
import type { BuildResult, MatrixOptions } from '../matrix/types.js';
import { parsePositiveInt } from '../util/size.js';
import { collect, registryFiles } from './common.js';

interface MatrixFlags {
  results: string;
  slots?: string;
  queue?: string;
  artifacts?: string;
  boxes?: string[];
  quiet?: boolean;
}

/** The exit status of a matrix run: 0 when every build passed, 1 when one did not, 130/143 when stopped. */
function matrixStatus(signal: AbortSignal, statuses: string[]): number {
  if (signal.aborted) return signal.reason === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated;
  return statuses.every((status) => status === 'passed') ? 0 : 1;
}

async function runMatrixCommand(file: string, flags: MatrixFlags, signal: AbortSignal): Promise<number> {
  const [{ loadMatrix }, { chooseSlots, runMatrix }, { writeReport }, { Progress, countLine }, { formatSeconds }] = await Promise.all([
    import('../matrix/spec.js'),
    import('../matrix/local.js'),
    import('../matrix/report/index.js'),
    import('../matrix/progress.js'),
    import('../matrix/report/text.js'),
  ]);
  const queue = flags.queue === undefined ? undefined : (await import('../matrix/queue/redis.js')).parseRedisUrl(flags.queue);
  if (queue && flags.slots !== undefined) throw usageError("--slots: with --queue, the workers' own --slots say how many builds run at once");
  if (!queue && flags.artifacts !== undefined) throw usageError('--artifacts goes with --queue (a local run keeps each build in --results)');
  const { findBox, loadRegistry } = await import('../box/registry.js');
  const registry = loadRegistry(registryFiles(flags), cacheRoot());
  const builds = loadMatrix(file, { checkBox: (box, arch) => void findBox(registry, box, arch), registryFiles: (flags.boxes ?? []).map((path) => resolve(path)) });
  const resultsDir = resolve(flags.results);
  let where: string;
  let runBuilds: (options: MatrixOptions) => Promise<BuildResult[]>;
  if (queue) {
    const [{ checkRedis }, { newRunId, runMatrixOnQueue }] = await Promise.all([import('../matrix/queue/redis.js'), import('../matrix/queue/submit.js')]);
    await checkRedis(queue); // a Redis that is down: one error line before anything else
    const artifacts = flags.artifacts === undefined ? undefined : resolve(flags.artifacts);
    where = `on the workers of ${queue.shown}`;
    runBuilds = (options) => runMatrixOnQueue(builds, { ...options, target: queue, runId: newRunId(), artifacts });
  } else {
    const boxMemoryMiB = Math.max(...builds.map((build) => registry.get(build.box)!.memoryMiB));
    const slots = flags.slots === undefined ? chooseSlots({ cores: availableParallelism(), freeMiB: freemem() / 2 ** 20 }, boxMemoryMiB) : parsePositiveInt(flags.slots, '--slots');
    where = `${slots} at once`;
    runBuilds = (options) => runMatrix(builds, { ...options, slots });
  }
  const say = (line: string) => {
    if (!flags.quiet) process.stderr.write(`${line}\n`);
  };
  say(`boxbuild: matrix ${file}: ${builds.length} build${builds.length === 1 ? '' : 's'}, ${where}; results in ${resultsDir}`);
  const progress = flags.quiet ? undefined : new Progress(process.stderr, builds.length);
  const startedAt = new Date();
  let results: BuildResult[];
  try {
    results = await runBuilds({ resultsDir, signal, events: progress });
  } finally {
    progress?.close();
  }
  const run = { matrix: resolve(file), startedAt: startedAt.toISOString(), endedAt: new Date().toISOString(), builds: results };
  const { changes } = await writeReport(resultsDir, run);
  const changed = changes.filter((change) => change.kind !== 'slower').map((change) => `${change.kind}: ${change.name}`);
  for (const line of changed) say(`boxbuild: ${line}`);
  say(`boxbuild: matrix: ${countLine(results)} in ${formatSeconds((Date.parse(run.endedAt) - startedAt.getTime()) / 1000)}; report: ${join(resultsDir, 'index.html')}`);
  return matrixStatus(signal, results.map((result) => result.status));
}

/** `boxbuild matrix FILE`: the builds of a matrix file, several at once, and their report. */
export function addMatrixCommand(program: Command, signal: AbortSignal, done: (status: number) => void): void {
  program
    .command('matrix')
    .description('Run the builds of a matrix file (boxes × architectures × descriptions), several at once, each in its own VM, and write a report: results.json, junit.xml, index.html')
    .argument('<file>', 'the matrix file, YAML or JSON (see README, Nightly matrices)')
    .option('--results <dir>', 'where the report and each build\'s log and target go', 'matrix-results')
    .option('--slots <n>', 'how many builds run at once (default: as many as the cores, and the free memory for VMs of the largest box)')
    .option('--queue <url>', 'run the builds on the boxbuild workers of this Redis (see boxbuild worker): redis://[USER:PASSWORD@]HOST[:PORT][/DB]')
    .option('--artifacts <dir>', 'with --queue: where the workers put each build (<dir>/<run id>/<build id>/), a directory they all reach (default: <results>/builds)')
    .option('--boxes <file>', 'an extra box registry file (may be repeated)', collect)
    .option('-q, --quiet', 'print no progress (errors are still printed)')
    .addHelpText(
      'after',
      `
Exit status: 0 when every build passed, 1 when any failed, timed out or ended with a boxbuild error,
130/143 when stopped (the running builds' VMs are stopped, the rest marked cancelled).

Examples:
  boxbuild matrix nightly.yaml --results /srv/www/nightly --slots 2
  boxbuild matrix nightly.yaml --queue redis://queue.example:6379 --artifacts /mnt/builds`,
    )
    .exitOverride()
    .action(async (file: string, flags: MatrixFlags) => done(await runMatrixCommand(file, flags, signal)));
}
