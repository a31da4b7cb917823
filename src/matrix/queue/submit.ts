import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Job, Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { settledWithin } from '../../util/abort.js';
import { notRun } from '../build.js';
import type { BuildResult, MatrixBuild, MatrixOptions, MatrixRunner } from '../types.js';
import { buildDir } from './artifacts.js';
import { canRun } from './capabilities.js';
import { type JobData, type JobStart, JOB_OPTIONS, KEYS, PREFIX, jobId, liveWorkers, queueName } from './protocol.js';
import { type RedisTarget, checkRedis, connectionReporter, openRedis } from './redis.js';

/*
 * `boxbuild matrix FILE --queue URL`: one job per build in the queue of its box and architecture,
 * then the results as the workers return them. QueueEvents tell what happens as it happens; a poll
 * of the jobs' states catches what an event could not (a result in before the events were read,
 * a reconnect).
 */

export interface QueueOptions extends MatrixOptions {
  target: RedisTarget;
  /** The run's id: in job ids (<run id>.<build id>) and artifact paths (<artifacts>/<run id>/<build id>/). */
  runId: string;
  /**
   * The artifact root as this host reaches it (default: <results>/builds); the workers reach it at
   * the same path, or at their --artifacts.
   */
  artifacts?: string;
  /** How long a cancelled run waits for its running builds to report that they stopped. */
  cancelGraceMs?: number;
}

/** A run id for job ids and directory names: the time it started, and a few random letters. */
export const newRunId = (now = new Date()) => `${now.toISOString().replace(/\.\d+Z$/, '').replace(/[-:]/g, '').replace('T', '-')}-${randomBytes(3).toString('hex')}`;

/** How often the jobs' states are read besides the events. */
const POLL_MS = 5000;
const CANCEL_GRACE_MS = 30_000;
const CLOSE_GRACE_MS = 5000;
/** How long a cancelled run stays marked so, for a worker that takes one of its jobs late. */
const CANCEL_MARK_SECONDS = 86_400;

interface Pending {
  build: MatrixBuild;
  queue: Queue<JobData, BuildResult>;
  result?: BuildResult;
}

/** A BuildResult as a worker returned it, its log resolved in the artifact root as this host reaches it. */
const located = (result: BuildResult, dir: string): BuildResult => ({ ...result, log: result.log && join(dir, result.log) });

/** Runs the builds on the queue's workers; resolves with their results in the builds' order (cancelled ones too). */
export const runMatrixOnQueue: MatrixRunner<QueueOptions> = async (builds, options) => {
  const { target, runId, signal, events } = options;
  const artifacts = options.artifacts ?? join(options.resultsDir, 'builds');
  const notice = (line: string) => events?.note?.(line);
  await checkRedis(target);
  const reporter = connectionReporter(notice);
  const report = reporter.error;
  // Connections of ours, given to BullMQ: closed by us whatever state Redis is in (BullMQ's close waits for a Redis that is down).
  const connections: Redis[] = [];
  const connect = () => {
    const connection = openRedis(target, reporter);
    connections.push(connection);
    return connection;
  };
  const client = connect();
  const names = [...new Set(builds.map((build) => queueName(build.box, build.arch)))];
  const queues = new Map(names.map((name) => [name, new Queue<JobData, BuildResult>(name, { connection: client, prefix: PREFIX })]));
  const followers = names.map((name) => new QueueEvents(name, { connection: connect(), prefix: PREFIX }));
  const pending = new Map<string, Pending>(builds.map((build) => [jobId(runId, build.id), { build, queue: queues.get(queueName(build.box, build.arch))! }]));
  let settled = 0;
  let wake: () => void = () => {};
  const settle = (id: string, result: BuildResult) => {
    const entry = pending.get(id)!;
    if (entry.result) return;
    entry.result = result;
    settled++;
    events?.ended?.(result);
    wake();
  };
  /** Reads a job's state; settles it when it is finished. */
  const check = async (id: string) => {
    const entry = pending.get(id);
    if (!entry || entry.result) return;
    const job = (await entry.queue.getJob(id)) as Job<JobData, BuildResult> | undefined;
    if (!job) return settle(id, { ...notRun(entry.build, 'queue'), status: 'error', error: 'boxbuild: error: the job left the queue before it finished' });
    const state = await job.getState();
    if (state === 'completed') settle(id, located(job.returnvalue, buildDir(artifacts, runId, entry.build.id)));
    if (state === 'failed') settle(id, { ...notRun(entry.build, 'queue'), status: 'error', attempts: job.attemptsMade, error: `boxbuild: error: ${job.failedReason}` });
  };
  const checkAll = () => Promise.all([...pending.keys()].map(check));

  try {
    for (const queueEvents of followers) {
      queueEvents.on('error', report);
      queueEvents.on('progress', ({ jobId: id, data }) => {
        const start = data as Partial<JobStart>;
        const entry = pending.get(id);
        if (!entry || typeof start.worker !== 'string') return;
        events?.started?.(entry.build, `${start.worker}${start.attempt && start.attempt > 1 ? ` (attempt ${start.attempt})` : ''}`);
      });
      queueEvents.on('stalled', ({ jobId: id }) => pending.has(id) && notice(`${pending.get(id)!.build.name}: its worker stopped answering; the build goes back to the queue`));
      for (const event of ['completed', 'failed'] as const) queueEvents.on(event, ({ jobId: id }: { jobId: string }) => void check(id).catch(report));
    }
    await Promise.all(followers.map((queueEvents) => queueEvents.waitUntilReady()));
    await client.sadd(KEYS.queues, ...names);
    for (const [name, queue] of queues) {
      const jobs = builds.filter((build) => queueName(build.box, build.arch) === name);
      await queue.addBulk(jobs.map((build) => ({ name: build.name, data: { runId, build, artifacts }, opts: { ...JOB_OPTIONS, jobId: jobId(runId, build.id) } })));
    }
    await client.publish(KEYS.wake, runId);
    const workers = await liveWorkers(client);
    for (const name of names) {
      if (!workers.some((worker) => canRun(worker, name))) notice(`no live worker can run ${name.replace('@', ' ')} builds (${workers.length} worker${workers.length === 1 ? '' : 's'} announced): they wait until one can`);
    }
    while (settled < pending.size && !signal.aborted) {
      await checkAll().catch(report);
      const waiting = new AbortController();
      wake = () => waiting.abort();
      await sleep(POLL_MS, undefined, { signal: AbortSignal.any([signal, waiting.signal]) }).catch(() => {});
    }
    const reachable = client.status === 'ready';
    if (settled < pending.size) {
      const graceMs = options.cancelGraceMs ?? CANCEL_GRACE_MS;
      if (reachable) await settledWithin(cancel(client, runId, pending, settle, checkAll, graceMs), graceMs + CLOSE_GRACE_MS);
      else notice(`queue: cannot reach ${target.shown}: the workers were not told to stop the builds of run ${runId}`);
      for (const [id, entry] of pending) if (!entry.result) settle(id, notRun(entry.build, 'queue'));
    }
    // Their results are in: the jobs are of no more use (one still running after the cancel grace stays until it ends).
    if (reachable) await settledWithin(Promise.all([...pending].map(([id, entry]) => entry.queue.remove(id))), CLOSE_GRACE_MS);
    return builds.map((build) => pending.get(jobId(runId, build.id))!.result!);
  } finally {
    await settledWithin(Promise.all([...followers, ...queues.values()].map((closable) => closable.close())), CLOSE_GRACE_MS);
    for (const connection of connections) connection.disconnect();
  }
};

/**
 * Cancels a run: marks it, tells every worker to stop its builds, removes its waiting jobs (those
 * running are locked), and waits a while for the running ones to come back as cancelled.
 */
async function cancel(client: Redis, runId: string, pending: Map<string, Pending>, settle: (id: string, result: BuildResult) => void, checkAll: () => Promise<unknown>, graceMs: number): Promise<void> {
  await client.set(KEYS.cancelled(runId), '1', 'EX', CANCEL_MARK_SECONDS);
  await client.publish(KEYS.cancel, runId);
  for (const [id, entry] of pending) {
    if (!entry.result && (await entry.queue.remove(id)) === 1) settle(id, notRun(entry.build, 'queue'));
  }
  const deadline = Date.now() + graceMs;
  while ([...pending.values()].some((entry) => !entry.result) && Date.now() < deadline) {
    await sleep(500);
    await checkAll().catch(() => {});
  }
}
