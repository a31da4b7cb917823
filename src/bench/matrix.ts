import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { runMatrix } from '../matrix/local.js';
import { newRunId, runMatrixOnQueue } from '../matrix/queue/submit.js';
import { parseRedisUrl } from '../matrix/queue/redis.js';
import { loadMatrix } from '../matrix/spec.js';
import type { BuildResult, MatrixBuild } from '../matrix/types.js';
import { CLI, freePort, median, seconds, table } from './measure.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const WORKERS = 2;

/** A process of the bench, ended (SIGTERM, as a user would) by stop(). */
function started(file: string, args: string[], env: NodeJS.ProcessEnv, ready: string): { child: ChildProcess; ready: Promise<void>; stop: () => Promise<void> } {
  const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit');
  const output: string[] = [];
  const ready$ = new Promise<void>((resolve, reject) => {
    for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (line) => (output.push(line), line.includes(ready) && resolve()));
    void exited.then(() => reject(new Error(`${file} ${args.join(' ')} ended: ${output.slice(-5).join('\n')}`)));
  });
  return {
    child,
    ready: ready$,
    stop: async () => {
      ready$.catch(() => {});
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Wall time of one run of the matrix, and when each build's result came in. */
async function timedRun(run: (events: { ended: (result: BuildResult) => void }) => Promise<BuildResult[]>) {
  const arrived = new Map<string, number>();
  const startedAt = Date.now();
  const results = await run({ ended: (result) => arrived.set(result.id, Date.now()) });
  const failed = results.filter((result) => result.status !== 'passed');
  if (failed.length) throw new Error(`${failed.length} builds did not pass: ${failed.map((result) => `${result.name}: ${result.status} ${result.error ?? ''} (${result.log})`).join('; ')}`);
  return { wall: (Date.now() - startedAt) / 1000, startedAt, results, arrived };
}

/**
 * What the queue adds, from the builds' own start and end on the workers (their BuildResult) and
 * when the matrix had each result: from the matrix's start to each worker's first build (enqueue,
 * wake-up, fetch); between two builds on a worker (the last one's artifacts hashed and published,
 * its job completed, the next one fetched); from a build's end on its worker to its result at the
 * matrix.
 */
function overhead(run: Awaited<ReturnType<typeof timedRun>>): { first: number[]; between: number[]; gathering: number[] } {
  const start = (result: BuildResult) => Date.parse(result.startedAt);
  const end = (result: BuildResult) => start(result) + result.durationSeconds * 1000;
  const lastEnd = new Map<string, number>();
  const first: number[] = [];
  const between: number[] = [];
  for (const result of [...run.results].sort((a, b) => start(a) - start(b))) {
    const previous = lastEnd.get(result.ranOn);
    (previous === undefined ? first : between).push((start(result) - (previous ?? run.startedAt)) / 1000);
    lastEnd.set(result.ranOn, end(result));
  }
  return { first, between, gathering: run.results.map((result) => (run.arrived.get(result.id)! - end(result)) / 1000) };
}

/**
 * A matrix of 8 small builds (examples/hello on debian x86_64 and aarch64, 4 arguments each) run
 * with 1 and 2 local slots, and on 2 `boxbuild worker`s of this host through a local Redis
 * (redis-tools' binary, as the tests start it): wall time, builds per minute, and what the queue
 * adds per build.
 */
export async function benchMatrix(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-bench-matrix-'));
  const processes: { stop: () => Promise<void> }[] = [];
  try {
    const file = join(dir, 'matrix.yaml');
    const builds = [1, 2, 3, 4].map((n) => `  - { box: debian, arch: [x86_64, aarch64], args: [n=${n}] }`);
    await writeFile(file, `defaults: { description: ${join(repo, 'examples/hello')} }\nbuilds:\n${builds.join('\n')}\n`);
    const matrix: MatrixBuild[] = loadMatrix(file);
    // The local runs' builds run with this process's environment: the bench's cache.
    process.env.BOXBUILD_CACHE_DIR = env.BOXBUILD_CACHE_DIR;
    const signal = new AbortController().signal;
    const local = (slots: number) => timedRun((events) => runMatrix(matrix, { resultsDir: join(dir, `local-${slots}`), signal, slots, events: { ...events, note: () => {} } }));
    const rows: string[][] = [];
    const row = (what: string, wall: number) => rows.push([what, seconds(wall), (matrix.length / (wall / 60)).toFixed(1)]);
    row('local, 1 slot', (await local(1)).wall);
    row('local, 2 slots', (await local(2)).wall);

    const port = await freePort();
    const redis = started(join(repo, '.cache/tools/redis-server'), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], env, 'Ready to accept connections');
    processes.push(redis);
    await redis.ready;
    const url = `redis://127.0.0.1:${port}`;
    for (let n = 1; n <= WORKERS; n++) {
      const worker = started(process.execPath, [CLI, 'worker', '--queue', url, '--name', `bench-${n}`, '--allow', repo, '--allow', dir], env, 'waiting for builds');
      processes.push(worker);
      await worker.ready;
    }
    await sleep(500); // the workers subscribed to the wake-up channel
    const queued = await timedRun((events) => runMatrixOnQueue(matrix, { resultsDir: join(dir, 'queue'), signal, events, target: parseRedisUrl(url), runId: newRunId() }));
    row(`queue, ${WORKERS} workers × 1 slot`, queued.wall);
    const { first, between, gathering } = overhead(queued);
    const figures = (values: number[]) => `median ${seconds(median(values))}, max ${seconds(Math.max(...values))}`;
    return `## Build matrices (${matrix.length} builds: examples/hello, debian x86_64 and aarch64)\n\n${table(['run', 'wall', 'builds/min'], rows)}\n\n${table(
      ['what the queue adds', 'time'],
      [
        ["matrix start → a worker's first build starts (enqueue, wake-up, fetch)", figures(first)],
        ['between two builds on a worker (publish the artifacts, complete the job, fetch the next)', figures(between)],
        ["a build's end on its worker → its result at the matrix", figures(gathering)],
      ],
    )}`;
  } finally {
    for (const process of processes.reverse()) await process.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
