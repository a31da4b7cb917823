import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import type { MatrixRun } from '../../src/matrix/types.js';
import { startIsolated } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';
import { CLI, REPO, TEST_CACHE } from '../helpers/env.js';
import { freePort } from '../helpers/http.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { processesOf, tempDir } from '../helpers/temp.js';

/*
 * boxbuild matrix --queue and boxbuild worker against a real Redis (redis-tools' binary, on
 * 127.0.0.1) and real VMs of the debian box: two workers on this host, one SIGKILLed mid-build, a
 * matrix cancelled, workers stopped by SIGTERM and SIGINT.
 */

/** Locks short enough that a dead worker's build is taken again within seconds. */
const LOCK = ['--lock-duration', '4s', '--stalled-interval', '2s'];

/** A `boxbuild worker` child process with a TMPDIR of its own, and the lines it printed. */
class TestWorker {
  readonly tmp = tempDir('worker-');
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;

  constructor(
    readonly name: string,
    url: string,
    allow: string,
  ) {
    this.child = spawn(process.execPath, [CLI, 'worker', '--queue', url, '--name', name, '--allow', allow, ...LOCK], {
      env: { ...process.env, BOXBUILD_CACHE_DIR: TEST_CACHE, TMPDIR: this.tmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = once(this.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    for (const stream of [this.child.stdout!, this.child.stderr!]) createInterface({ input: stream }).on('line', (line) => this.lines.push(line));
  }

  async ready(): Promise<void> {
    await vi.waitFor(() => expect(this.lines.join('\n')).toContain('waiting for builds'), { timeout: 30_000, interval: 100 });
  }

  /** QEMU and boxbuild processes it started (not itself). */
  builds(): string[] {
    return processesOf(this.tmp)
      .filter((p) => p.pid !== this.child.pid)
      .map((p) => p.command);
  }
}

/** A description whose build writes its arguments, saying "sleeping" before it sleeps as long as sleep=SECONDS says. */
function sleepyDescription(dir: string): string {
  const description = join(dir, 'sleepy');
  mkdirSync(description);
  writeFileSync(
    join(description, 'build'),
    `#!/bin/sh
set -eu
target=$1
shift
for arg in "$@"; do case $arg in sleep=*) echo sleeping; sleep "\${arg#sleep=}" ;; esac; done
mkdir -p "$target/out"
echo "$*" >"$target/out/args.txt"
uname -m >"$target/out/arch.txt"
`,
  );
  chmodSync(join(description, 'build'), 0o755);
  return description;
}

const matrixFile = (dir: string, description: string, builds: string[]) => {
  const file = join(dir, `matrix-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, `defaults: { description: ${description} }\nbuilds:\n${builds.map((build) => `  - ${build}\n`).join('')}`);
  return file;
};

const readRun = (results: string): MatrixRun => JSON.parse(readFileSync(join(results, 'results.json'), 'utf8'));
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** The attempt directories in which a worker's build is sleeping now. */
const sleepingIn = (artifacts: string, worker: string): string[] =>
  (existsSync(artifacts) ? readdirSync(artifacts) : []).flatMap((run) =>
    readdirSync(join(artifacts, run))
      .filter((name) => name.endsWith(`.${worker}`) && existsSync(join(artifacts, run, name, 'log.txt')) && readFileSync(join(artifacts, run, name, 'log.txt'), 'utf8').includes('sleeping'))
      .map((name) => join(artifacts, run, name)),
  );

/** Every regular file under dir, relative to it. */
const filesIn = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();

describe('boxbuild matrix --queue with boxbuild workers', () => {
  let redis: TestRedis;
  const workers: TestWorker[] = [];
  const dir = tempDir();
  const description = sleepyDescription(dir);
  const startWorker = async (name: string) => {
    const worker = new TestWorker(name, redis.url, dir);
    workers.push(worker);
    await worker.ready();
    return worker;
  };

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    for (const worker of workers) if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
    await Promise.all(workers.map((worker) => worker.exited));
    await redis?.stop();
  });

  test('a Redis that is down: one line, exit 69, at once', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const file = matrixFile(dir, description, ['{ box: debian, arch: x86_64 }']);
    for (const args of [['worker', '--queue', url], ['matrix', file, '--queue', url, '--results', join(dir, 'none')]]) {
      const startedAt = Date.now();
      const result = await runCli(args);
      expect(result.exitCode, args[0]).toBe(69);
      expect(result.stderr).toBe(`boxbuild: error: cannot reach the queue at ${url}: connect ECONNREFUSED ${url.slice('redis://'.length)}`);
      expect(Date.now() - startedAt).toBeLessThan(10_000);
    }
    expect(existsSync(join(dir, 'none'))).toBe(false);
  });

  test('a worker SIGKILLed mid-build: its build runs again on the other, nothing of it left; every result in, the artifacts once each with their manifest', { timeout: 300_000 }, async () => {
    const [w1, w2] = [await startWorker('w1'), await startWorker('w2')];
    const file = matrixFile(dir, description, ['{ box: debian, arch: [x86_64, aarch64], args: [one, sleep=8] }', '{ box: debian, arch: [x86_64, aarch64], args: [two, sleep=8] }']);
    const [results, artifacts] = [join(dir, 'results'), join(dir, 'artifacts')];
    const matrix = startIsolated(['matrix', file, '--queue', redis.url, '--results', results, '--artifacts', artifacts]);

    await vi.waitFor(() => expect(sleepingIn(artifacts, 'w1')).toHaveLength(1), { timeout: 120_000, interval: 200 });
    const killed = /^(.*): started \(run /m.exec(w1.lines.join('\n'))![1]!;
    expect(w1.builds().some((command) => command.startsWith('qemu-system-'))).toBe(true);
    w1.child.kill('SIGKILL');
    // Its build and that build's QEMU die with it, at once: not when the build would have ended.
    await vi.waitFor(() => expect(w1.builds()).toEqual([]), { timeout: 3000, interval: 100 });

    const ended = await matrix.child;
    expect(ended.exitCode, String(ended.stderr)).toBe(0);
    expect(String(ended.stderr)).toContain(`started ${killed} on w2 (attempt 2)`);
    expect(String(ended.stderr)).toContain(`${killed}: its worker stopped answering; the build goes back to the queue`);
    const run = readRun(results);
    expect(run.builds.map((build) => [build.label, build.arch, build.status, build.ranOn])).toEqual([
      [`${description} one sleep=8`, 'x86_64', 'passed', 'w2'],
      [`${description} one sleep=8`, 'aarch64', 'passed', 'w2'],
      [`${description} two sleep=8`, 'x86_64', 'passed', 'w2'],
      [`${description} two sleep=8`, 'aarch64', 'passed', 'w2'],
    ]);

    // One directory per build: no attempt left, not the dead worker's either.
    const [runId, ...otherRuns] = readdirSync(artifacts);
    expect(otherRuns).toEqual([]);
    const runDir = join(artifacts, runId!);
    expect(readdirSync(runDir).sort()).toEqual(run.builds.map((build) => build.id).sort());
    for (const build of run.builds) {
      const buildDir = join(runDir, build.id);
      expect(build.log).toBe(join(buildDir, 'log.txt'));
      expect(readFileSync(join(buildDir, 'target/out/args.txt'), 'utf8')).toBe(`${build.label.split(' ').slice(1).join(' ')}\n`);
      expect(readFileSync(join(buildDir, 'target/out/arch.txt'), 'utf8')).toBe(`${build.arch}\n`);
      const manifest = JSON.parse(readFileSync(join(buildDir, 'manifest.json'), 'utf8')) as { files: { path: string; size: number; sha256: string }[] };
      expect(manifest.files.map((entry) => entry.path)).toEqual(filesIn(buildDir).filter((path) => path !== 'manifest.json'));
      expect(manifest.files.map((entry) => entry.path)).toEqual(expect.arrayContaining(['build.json', 'log.txt', 'result.json', 'target/out/args.txt']));
      for (const entry of manifest.files) expect(entry.sha256, entry.path).toBe(sha256(join(buildDir, entry.path)));
      expect(build.artifacts.find((artifact) => artifact.path === 'out/args.txt')?.sha256).toBe(sha256(join(buildDir, 'target/out/args.txt')));
    }
    // The matrix removed its jobs from Redis.
    expect(await redis.client.keys(`boxbuild:*:${runId}.*`)).toEqual([]);
    expect(w2.builds()).toEqual([]);
  });

  test('Ctrl-C of the matrix stops the running builds on every worker and removes the waiting ones: exit 130, all cancelled, the workers idle again', { timeout: 300_000 }, async () => {
    const [w2, w3] = [workers.find((worker) => worker.name === 'w2')!, await startWorker('w3')];
    const file = matrixFile(dir, description, ['{ box: debian, arch: [x86_64, aarch64], args: [three, sleep=800] }', '{ box: debian, arch: [x86_64, aarch64], args: [four, sleep=800] }']);
    const [results, artifacts] = [join(dir, 'cancelled'), join(dir, 'cancelled-artifacts')];
    const matrix = startIsolated(['matrix', file, '--queue', redis.url, '--results', results, '--artifacts', artifacts]);
    await vi.waitFor(() => expect([...sleepingIn(artifacts, 'w2'), ...sleepingIn(artifacts, 'w3')]).toHaveLength(2), { timeout: 120_000, interval: 200 });

    const stoppedAt = Date.now();
    matrix.child.kill('SIGINT');
    const ended = await matrix.child;
    expect(ended.exitCode, String(ended.stderr)).toBe(130);
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    const run = readRun(results);
    expect(run.builds.map((build) => build.status)).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled']);
    // Two ran (one on each worker) and were stopped there; the two that waited never ran.
    expect(run.builds.map((build) => build.ranOn).sort()).toEqual(['queue', 'queue', 'w2', 'w3']);
    for (const worker of [w2, w3]) {
      await vi.waitFor(() => expect(worker.builds()).toEqual([]), { timeout: 30_000, interval: 200 });
      expect(worker.lines.join('\n')).toMatch(/four|three/);
      expect(worker.lines.join('\n')).toMatch(/: cancelled in \d+ s$/m);
    }
    const runId = readdirSync(artifacts)[0]!;
    expect(await redis.client.keys(`boxbuild:*:${runId}.*`)).toEqual([]);
    for (const queue of ['debian@x86_64', 'debian@aarch64']) expect(await redis.client.llen(`boxbuild:${queue}:wait`), queue).toBe(0);
  });

  test('a job naming a description outside the directories the worker may use (--allow) is refused, and nothing of it runs', { timeout: 120_000 }, async () => {
    const w2 = workers.find((worker) => worker.name === 'w2')!;
    const outside = join(REPO, 'examples/hello');
    const results = join(dir, 'refused');
    const result = await runCli(['matrix', matrixFile(dir, outside, ['{ box: debian, arch: x86_64 }']), '--queue', redis.url, '--results', results, '-q']);
    expect(result.exitCode, result.stderr).toBe(1);
    const [build] = readRun(results).builds;
    expect(build!.status).toBe('error');
    expect(build!.error).toContain(`the job names ${outside}, which is outside the directories this worker may use (${realpathSync(dir)}; see --allow)`);
    expect(w2.lines.join('\n')).toContain('refused: the job names');
    expect(w2.builds()).toEqual([]);
  });

  test('workers stop cleanly: SIGTERM gives the running build back (the other worker runs it), exit 143; SIGINT 130; each withdraws its announcement', { timeout: 180_000 }, async () => {
    expect((await redis.client.keys('boxbuild:worker:*')).sort()).toEqual(['boxbuild:worker:w2', 'boxbuild:worker:w3']);
    const file = matrixFile(dir, description, ['{ box: debian, arch: x86_64, args: [five, sleep=8] }']);
    const [results, artifacts] = [join(dir, 'given-back'), join(dir, 'given-back-artifacts')];
    const matrix = startIsolated(['matrix', file, '--queue', redis.url, '--results', results, '--artifacts', artifacts]);
    await vi.waitFor(() => expect([...sleepingIn(artifacts, 'w2'), ...sleepingIn(artifacts, 'w3')]).toHaveLength(1), { timeout: 120_000, interval: 200 });
    const [first, other] = (sleepingIn(artifacts, 'w2').length ? ['w2', 'w3'] : ['w3', 'w2']).map((name) => workers.find((worker) => worker.name === name)!) as [TestWorker, TestWorker];
    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual([143, null]);
    expect(first.builds()).toEqual([]);
    expect(first.lines.slice(-2)).toEqual([expect.stringMatching(/five sleep=8: given back to the queue$/), `worker ${first.name}: stopped`]);

    const ended = await matrix.child;
    expect(ended.exitCode, String(ended.stderr)).toBe(0);
    const [build] = readRun(results).builds;
    expect(build).toMatchObject({ status: 'passed', ranOn: other.name });
    const runId = readdirSync(artifacts)[0]!;
    expect(readdirSync(join(artifacts, runId))).toEqual([build!.id]);

    other.child.kill('SIGINT');
    expect(await other.exited).toEqual([130, null]);
    expect(other.lines.at(-1)).toBe(`worker ${other.name}: stopped`);
    expect(await redis.client.keys('boxbuild:worker:*')).toEqual([]);
  });
});
