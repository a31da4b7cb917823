import { realpathSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { cacheRoot, openCache } from '../box/cache.js';
import { ExitCode, usageError } from '../errors.js';
import { parseDurationMs, parsePositiveInt } from '../util/size.js';
import { collect, registryFiles } from './common.js';

interface WorkerFlags {
  queue?: string;
  name?: string;
  slots: string;
  artifacts?: string;
  allow?: string[];
  boxes?: string[];
  lockDuration: string;
  stalledInterval: string;
}

/** An --allow directory, links resolved (the paths of jobs are compared with it so). */
function realDirectory(dir: string): string {
  try {
    const real = realpathSync(dir);
    if (statSync(real).isDirectory()) return real;
  } catch {
    // said below
  }
  throw usageError(`--allow ${dir}: not a directory`);
}

/** The host's name as a worker name: what SAFE_NAME refuses becomes "-". */
const defaultName = () => hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'worker';

/** `boxbuild worker --queue URL`: runs matrix builds from a queue until SIGINT/SIGTERM (exit 130/143). */
export function addWorkerCommand(program: Command, signal: AbortSignal, done: (status: number) => void): void {
  program
    .command('worker')
    .description('Run the builds of matrices queued in Redis (boxbuild matrix FILE --queue URL) on this host until stopped')
    .option('--queue <url>', 'the Redis the matrices queue their builds in: redis://[USER:PASSWORD@]HOST[:PORT][/DB]')
    .option('--name <name>', "this worker's name, unique among the live workers (default: the host's name)")
    .option('--slots <n>', 'builds at a time', '1')
    .option('--artifacts <dir>', "where this host reaches the matrices' artifact directory (default: at the path the matrix gives)")
    .option('--allow <dir>', 'a directory whose descriptions (and box files, and artifact directory) jobs may name; anything else is refused (may be repeated; default: the current directory)', collect)
    .option('--boxes <file>', 'an extra box registry file: builds of its boxes are taken too (may be repeated)', collect)
    .option('--lock-duration <duration>', "a build's job counts as abandoned when its worker has not renewed its lock for this long", '30s')
    .option('--stalled-interval <duration>', 'how often to look for abandoned jobs (a dead worker\'s build starts again elsewhere within about lock duration + twice this)', '30s')
    .addHelpText(
      'after',
      `
Examples:
  boxbuild worker --queue redis://queue.example:6379 --slots 2 --artifacts /mnt/builds
  boxbuild matrix nightly.yaml --queue redis://queue.example:6379 --artifacts /mnt/builds`,
    )
    .exitOverride()
    .action(async (flags: WorkerFlags) => {
      const { parseRedisUrl } = await import('../matrix/queue/redis.js');
      const { SAFE_NAME } = await import('../matrix/queue/protocol.js');
      if (!flags.queue) throw usageError('missing --queue redis://HOST[:PORT]');
      const target = parseRedisUrl(flags.queue);
      const name = flags.name ?? defaultName();
      if (!SAFE_NAME.test(name)) throw usageError(`--name "${name}": use letters, digits, ".", "_" and "-" (it names directories)`);
      const lockDurationMs = parseDurationMs(flags.lockDuration, '--lock-duration');
      if (lockDurationMs < 2000) throw usageError('--lock-duration: at least 2s (the lock is renewed every half of it)');
      const settings = {
        target,
        name,
        slots: parsePositiveInt(flags.slots, '--slots'),
        artifacts: flags.artifacts === undefined ? undefined : resolve(flags.artifacts),
        allowed: (flags.allow ?? ['.']).map((dir) => realDirectory(dir)),
        cacheRoot: openCache(cacheRoot()),
        registry: (await import('../box/registry.js')).loadRegistry(registryFiles(flags), cacheRoot()),
        lockDurationMs,
        stalledIntervalMs: parseDurationMs(flags.stalledInterval, '--stalled-interval'),
        signal,
        log: (line: string) => void process.stdout.write(`${line}\n`),
      };
      const { runWorker } = await import('../matrix/queue/worker.js');
      await runWorker(settings);
      done(signal.reason === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated);
    });
}
