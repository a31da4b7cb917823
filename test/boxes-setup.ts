import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { TestProject } from 'vitest/node';
import { fetchTestBox } from './helpers/boxes.js';
import { CLI, REPO, TEST_CACHE } from './helpers/env.js';
import { BACKGROUND_BUILDS, SLOW_BOXES } from './slow-boxes.js';

/**
 * One queue per architecture: each box make keeps about one host core busy (its VM's one vCPU). The
 * makes run at the lowest CPU priority, so that the test files running meanwhile keep the speed
 * their timeouts assume, and get what those leave idle; but for the boxes of background builds.
 */
function queues(boxes: [string, string][]): [string, string][][] {
  const byArch = (arch: string) => boxes.filter(([, a]) => a === arch);
  return [byArch('x86_64'), byArch('aarch64')].filter((queue) => queue.length > 0);
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The directory of each background build (helpers/background-build.ts), by its test file. */
    backgroundBuilds: Record<string, string>;
  }
}

/**
 * A build started in the background once its box is made (BACKGROUND_BUILDS): its output, exit
 * status (`exit`, written when it ended) and private TMPDIR in `dir`, which its test file reads.
 */
class BackgroundBuild {
  private child?: ChildProcess;
  private stopped = false;
  private ended: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly args: string[],
  ) {
    mkdirSync(join(dir, 'tmp'));
  }

  start(): void {
    if (this.stopped) return;
    const [stdout, stderr] = ['stdout', 'stderr'].map((name) => openSync(join(this.dir, name), 'w'));
    this.child = spawn(process.execPath, [CLI, ...this.args], {
      env: { ...process.env, BOXBUILD_CACHE_DIR: TEST_CACHE, TMPDIR: join(this.dir, 'tmp') },
      stdio: ['ignore', stdout, stderr],
    });
    for (const fd of [stdout!, stderr!]) closeSync(fd);
    this.ended = once(this.child, 'exit').then(([code]) => writeFileSync(join(this.dir, 'exit'), `${code}\n`));
  }

  /** Says that the build will not run here (its box could not be made): its file runs it itself. */
  skip(): void {
    this.stopped = true;
    writeFileSync(join(this.dir, 'exit'), 'not started\n');
  }

  /** Ends a build still running (its file never read it: the run was cut short) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.child?.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.ended;
  }
}

/** A box make in the background: the queue's boxes one after the other, their output in one log file; then the builds each box waits for. */
class Queue {
  readonly log: string;
  private child?: ChildProcess;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(
    boxes: [string, string][],
    logDir: string,
    index: number,
    private readonly builds: Map<string, BackgroundBuild[]>,
  ) {
    this.log = join(logDir, `queue-${index}.log`);
    this.done = this.run(boxes);
  }

  private async run(boxes: [string, string][]): Promise<void> {
    for (const [box, arch] of boxes) {
      if (this.stopped) return;
      const fd = openSync(this.log, 'a');
      // A background build's box is on the run's longest path: made before the tests (at a higher
      // priority where the run may give one, as root), the other boxes with what they leave idle.
      const niceness = this.builds.has(`${box} ${arch}`) ? (process.getuid?.() === 0 ? '-5' : '0') : '19';
      this.child = spawn('nice', ['-n', niceness, process.execPath, CLI, 'box', 'fetch', box, '--arch', arch], { env: { ...process.env, BOXBUILD_CACHE_DIR: TEST_CACHE }, stdio: ['ignore', fd, fd] });
      closeSync(fd);
      const [code] = (await once(this.child, 'exit')) as [number | null];
      if (code !== 0 && !this.stopped) {
        // The test file makes the box itself then; this says why the background make did not.
        console.error(`\nmaking box ${box} (${arch}) in the background failed (status ${code}):\n${readFileSync(this.log, 'utf8').slice(-4000)}`);
        for (const build of [...this.builds.values()].flat()) build.skip();
        return;
      }
      for (const build of this.builds.get(`${box} ${arch}`) ?? []) build.start();
    }
  }

  /** Ends the make under way (boxbuild cleans up after SIGTERM) and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.child?.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.done;
  }
}

/**
 * The tiers that boot VMs: makes the debian boxes once per test run (kept when the test cache
 * already has current ones), then starts making the slow boxes the run's files need.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  for (const arch of ['x86_64', 'aarch64']) await fetchTestBox('debian', arch);
  // The file filters of the command line (`vitest run FILE`): vitest 3 keeps them as filenamePattern, not config.filters.
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern ?? project.vitest.config.filters;
  const files = new Set((await project.globTestFiles(filters)).testFiles.map((file) => relative(REPO, file)));
  // In the order of SLOW_BOXES, which is the order the files run in.
  const needed = new Map<string, [string, string]>();
  for (const [file, boxes] of Object.entries(SLOW_BOXES)) if (files.has(file)) for (const box of boxes) needed.set(box.join(' '), box);
  const logDir = mkdtempSync(join(tmpdir(), 'boxbuild-test-boxes-'));
  const builds = new Map<string, BackgroundBuild[]>();
  const buildDirs: Record<string, string> = {};
  for (const [file, { box, args }] of Object.entries(BACKGROUND_BUILDS)) {
    if (!files.has(file)) continue;
    const dir = mkdtempSync(join(logDir, 'build-'));
    buildDirs[file] = dir;
    builds.set(box.join(' '), [...(builds.get(box.join(' ')) ?? []), new BackgroundBuild(dir, args(join(dir, 'target')))]);
  }
  project.provide('backgroundBuilds', buildDirs);
  const running = queues([...needed.values()]).map((boxes, index) => new Queue(boxes, logDir, index, builds));
  return async () => {
    await Promise.all(running.map((queue) => queue.stop()));
    await Promise.all([...builds.values()].flat().map((build) => build.stop()));
    rmSync(logDir, { recursive: true, force: true });
  };
}
