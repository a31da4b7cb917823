import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { type Job, Worker } from 'bullmq';
import type { Registry } from '../../box/registry.js';
import { BoxbuildError } from '../../errors.js';
import { settledWithin, waitFor } from '../../util/abort.js';
import { VERSION } from '../../version.js';
import { runBuild } from '../build.js';
import type { BuildResult } from '../types.js';
import { BUILD_RESULT, attemptDir, buildDir, publish, publishedResult, removeStaleAttempts, writeManifest } from './artifacts.js';
import { type Capabilities, cachedQueues, probeCapabilities, queueOrder } from './capabilities.js';
import { type Announcement, type JobData, type JobStart, KEYS, MAX_STALLED, PREFIX, checkJob } from './protocol.js';
import { type RedisTarget, checkRedis, connectionReporter, openRedis } from './redis.js';

/*
 * `boxbuild worker`: takes builds from the queues of the boxes and architectures this host can run,
 * those of boxes it has cached first, at most `slots` at a time. Jobs are fetched by hand (BullMQ's
 * "manually fetching jobs" pattern) because one BullMQ Worker serves one queue: a Worker object per
 * queue fetches and checks for stalled jobs, and this loop decides which queue to ask next.
 */

export interface WorkerSettings {
  target: RedisTarget;
  /** Unique among the live workers: in Redis, in artifact paths, in BuildResult.ranOn. */
  name: string;
  slots: number;
  /** Where this host reaches the artifact root, when not at the path the matrix gave. */
  artifacts?: string;
  /** The directories a job may name (its description, box files, artifact root): see checkJob. */
  allowed: string[];
  cacheRoot: string;
  /** The boxes this host can run builds of. */
  registry: Registry;
  /** A job's lock lasts this long unless renewed (every half of it while its build runs). */
  lockDurationMs: number;
  /** How often the stalled-job check runs: a dead worker's job is taken again within about lockDuration + 2 × this. */
  stalledIntervalMs: number;
  /** Aborted: stop taking jobs, give the running ones back to the queue, close. */
  signal: AbortSignal;
  log: (line: string) => void;
}

/** How often a worker looks at the queues when no matrix wakes it (jobs retried after a delay, stalled jobs put back). */
const POLL_MS = 2000;
/** How often a worker renews its announcement, which expires after three times that. */
const ANNOUNCE_MS = 5000;
/** How long stopping may wait for the running builds to stop, and for Redis to take the last words. */
const STOP_GRACE_MS = 30_000;
const CLOSE_GRACE_MS = 5000;

/** Why a running build's signal was aborted: each ends its job differently. */
const CANCELLED = 'the matrix was cancelled'; // its result (cancelled) completes the job
const STOPPING = 'the worker is stopping'; // the job goes back to wait for another worker
const LOCK_LOST = "the job's lock was lost"; // another worker has it now: this attempt is dropped

interface Running {
  runId: string;
  controller: AbortController;
  done: Promise<void>;
}

/** Wakes the loop: a matrix published jobs, a build ended. A wake-up before the wait is kept. */
class Wakeup {
  private pending = false;
  private wake?: () => void;

  notify(): void {
    if (this.wake) this.wake();
    else this.pending = true;
  }

  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) return void (this.pending = false);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }
}

/** Runs a worker until `settings.signal` aborts; resolves once it has given back its jobs and closed its connections. */
export async function runWorker(settings: WorkerSettings): Promise<void> {
  const { name, signal, log } = settings;
  await checkRedis(settings.target);
  const reporter = connectionReporter(log);
  const report = reporter.error;
  const client = openRedis(settings.target, reporter);
  const subscriber = openRedis(settings.target, reporter);
  const capabilities = await probeCapabilities(settings.cacheRoot, settings.registry);
  const running = new Map<string, Running>();
  const announcement = (): Announcement => ({ name, host: hostname(), pid: process.pid, version: VERSION, slots: settings.slots, running: running.size, ...capabilities });
  const announce = (mode?: 'NX') => client.set(KEYS.worker(name), JSON.stringify(announcement()), 'PX', 3 * ANNOUNCE_MS, ...((mode ? [mode] : []) as []));
  if ((await announce('NX')) === null) {
    client.disconnect();
    subscriber.disconnect();
    throw new BoxbuildError('usage', `a worker named "${name}" is already running (or died less than ${(3 * ANNOUNCE_MS) / 1000} s ago): give this one another --name`);
  }
  const announcing = setInterval(() => {
    void cachedQueues(settings.cacheRoot)
      .then((cached) => ((capabilities.cached = cached), announce()))
      .catch(report);
  }, ANNOUNCE_MS);
  log(`worker ${name}: ${describe(capabilities)}; ${settings.slots} slot${settings.slots === 1 ? '' : 's'}; waiting for builds at ${settings.target.shown}`);

  const wakeup = new Wakeup();
  subscriber.on('message', (channel: string, message: string) => {
    if (channel === KEYS.wake) wakeup.notify();
    if (channel === KEYS.cancel) for (const build of running.values()) if (build.runId === message) build.controller.abort(CANCELLED);
  });
  await subscriber.subscribe(KEYS.wake, KEYS.cancel);

  const queues = new Map<string, Worker<JobData, BuildResult>>();
  /** A BullMQ Worker for each queue a matrix filled: it fetches that queue's jobs and puts back those whose worker died. */
  const syncQueues = async () => {
    for (const queue of queueOrder(await client.smembers(KEYS.queues), capabilities)) {
      if (queues.has(queue)) continue;
      const worker = new Worker<JobData, BuildResult>(queue, undefined, {
        connection: settings.target.connection,
        prefix: PREFIX,
        autorun: false,
        name,
        lockDuration: settings.lockDurationMs,
        stalledInterval: settings.stalledIntervalMs,
        maxStalledCount: MAX_STALLED,
      });
      worker.on('error', report);
      worker.on('stalled', (jobId) => (log(`job ${jobId} lost its worker: back in the queue`), wakeup.notify()));
      queues.set(queue, worker);
      worker.startStalledCheckTimer().catch(report);
    }
  };
  /** The first job of the queues in order of preference (cached boxes first). */
  const take = async (): Promise<{ job: Job<JobData, BuildResult>; token: string } | undefined> => {
    await syncQueues();
    for (const queue of queueOrder(queues.keys(), capabilities)) {
      const token = randomUUID();
      const job = await queues.get(queue)!.getNextJob(token, { block: false });
      if (job) return { job, token };
    }
    return undefined;
  };

  const perform = async (job: Job<JobData, BuildResult>, token: string, controller: AbortController) => {
    let checked: JobData;
    try {
      checked = checkJob(job.data, settings.allowed, settings.artifacts);
    } catch (error) {
      log(`job ${job.id}: refused: ${(error as Error).message}`);
      return void (await job.moveToFailed(error as Error, token, false).catch(report));
    }
    const { runId, build, artifacts: root } = checked;
    const attempt = job.attemptsStarted;
    const dir = attemptDir(root, runId, build.id, attempt, name);
    // A lock that cannot be renewed belongs to another worker now (this one was taken for dead).
    const renewal = setInterval(() => {
      job.extendLock(token, settings.lockDurationMs).then((renewed) => renewed || controller.abort(LOCK_LOST), report);
    }, settings.lockDurationMs / 2).unref(); // a build stuck past the stop grace must not keep the worker alive
    try {
      if (await client.exists(KEYS.cancelled(runId))) controller.abort(CANCELLED);
      log(`${build.name}: started (run ${runId}, attempt ${attempt})`);
      await job.updateProgress({ worker: name, attempt } satisfies JobStart);
      await mkdir(dir, { recursive: true });
      const result = await runBuild(build, { dir, signal: controller.signal, ranOn: name });
      const reason: unknown = controller.signal.reason;
      if (reason === STOPPING || reason === LOCK_LOST) {
        await rm(dir, { recursive: true, force: true });
        if (reason === STOPPING) await job.moveToWait(token);
        return log(`${build.name}: ${reason === STOPPING ? 'given back to the queue' : `dropped (${LOCK_LOST}: another worker runs it)`}`);
      }
      const published = await publishAttempt(result, dir, buildDir(root, runId, build.id), root, runId);
      await job.moveToCompleted(published, token, false);
      log(`${build.name}: ${published.status} in ${Math.round(result.durationSeconds)} s`);
    } catch (error) {
      await rm(dir, { recursive: true, force: true }).catch(() => {});
      log(`${build.name}: ${(error as Error).message}`);
      await job.moveToFailed(error as Error, token, false).catch(report);
    } finally {
      clearInterval(renewal);
    }
  };
  const start = (job: Job<JobData, BuildResult>, token: string) => {
    const controller = new AbortController();
    const done = perform(job, token, controller).finally(() => {
      running.delete(job.id!);
      wakeup.notify();
    });
    running.set(job.id!, { runId: job.data.runId, controller, done });
  };

  try {
    while (!signal.aborted) {
      // Redis down, take() waits for it: a stop must not.
      const taken = running.size < settings.slots ? await waitFor(take(), signal).catch((error: Error) => void (signal.aborted || report(error))) : undefined;
      if (taken) start(taken.job, taken.token);
      else await wakeup.wait(POLL_MS, signal);
    }
  } finally {
    for (const build of running.values()) build.controller.abort(STOPPING);
    await settledWithin(Promise.all([...running.values()].map((build) => build.done)), STOP_GRACE_MS);
    clearInterval(announcing);
    await settledWithin(client.del(KEYS.worker(name)), CLOSE_GRACE_MS);
    await settledWithin(Promise.all([...queues.values()].map((worker) => worker.close(true))), CLOSE_GRACE_MS);
    client.disconnect();
    subscriber.disconnect();
    log(`worker ${name}: stopped`);
  }
}

/**
 * Records the result and manifest in the attempt's directory and makes it the build's. When another
 * attempt got there first, that one's result is the build's: the result always matches the artifacts.
 * The result's log is relative to the build's directory (each host reaches the directory its own way).
 */
async function publishAttempt(result: BuildResult, dir: string, final: string, root: string, runId: string): Promise<BuildResult> {
  const own = { ...result, log: result.log && relative(dir, result.log) };
  await writeFile(join(dir, BUILD_RESULT), `${JSON.stringify(own, null, 2)}\n`);
  await writeManifest(dir);
  if (!(await publish(dir, final))) return publishedResult(final);
  await removeStaleAttempts(root, runId, result.id);
  return own;
}

/** "runs x86_64, aarch64 (no KVM); 3 box variants cached" */
function describe(capabilities: Capabilities): string {
  const kvm = capabilities.kvm ? ' (KVM)' : ' (no KVM)';
  return `runs ${capabilities.arches.join(', ')}${kvm}; ${capabilities.cached.length} box variant${capabilities.cached.length === 1 ? '' : 's'} cached`;
}
