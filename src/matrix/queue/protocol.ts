import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import type { Redis } from 'ioredis';
import { type Arch, isArch } from '../../box/arch.js';
import { isWithin } from '../../util/file.js';
import { MAX_RETRIES } from '../spec.js';
import type { MatrixBuild } from '../types.js';
import type { Capabilities } from './capabilities.js';

/*
 * Where a matrix and its workers meet in Redis. Every key starts with "boxbuild:": BullMQ's own keys
 * (its prefix) and the few of ours. Queue names hold an "@", which box names and our own keys never
 * do, so the two cannot collide.
 */

/** BullMQ's key prefix: a queue's keys are boxbuild:<queue>:wait, …:active, … */
export const PREFIX = 'boxbuild';

export const KEYS = {
  /** A set of every queue a matrix ever filled: the workers look here for queues they can serve. */
  queues: `${PREFIX}:queues`,
  /** Pub/sub: a matrix says "jobs are waiting", so idle workers look at once instead of at their next poll. */
  wake: `${PREFIX}:wake`,
  /** Pub/sub: a run id whose builds every worker stops. */
  cancel: `${PREFIX}:cancel`,
  /** Set (with an expiry) when a run is cancelled: a worker that takes one of its jobs afterwards runs nothing. */
  cancelled: (runId: string) => `${PREFIX}:cancelled:${runId}`,
  /** What a live worker announced (JSON), expiring unless the worker renews it. */
  worker: (name: string) => `${PREFIX}:worker:${name}`,
};

/**
 * One queue per box and architecture: BullMQ has no per-worker job filter, so a worker chooses
 * what it runs by the queues it takes jobs from.
 */
export const queueName = (box: string, arch: Arch) => `${box}@${arch}`;

export function parseQueueName(name: string): { box: string; arch: Arch } | undefined {
  const at = name.lastIndexOf('@');
  const [box, arch] = [name.slice(0, at), name.slice(at + 1)];
  return at > 0 && isArch(arch) ? { box, arch } : undefined;
}

/** Names in Redis keys, job ids and artifact paths: no "/" (a path), no ":" (BullMQ refuses it in ids). */
export const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A build's job: the same id when the same run enqueues it twice (BullMQ then keeps the first). */
export const jobId = (runId: string, buildId: string) => `${runId}.${buildId}`;

/** A job's data: one build of a run, and where its artifacts go as the matrix host reaches them. */
export interface JobData {
  runId: string;
  build: MatrixBuild;
  artifacts: string;
}

/**
 * A job as a worker takes it: what is in Redis is checked, since anyone who can write there could
 * otherwise point a worker at any file of its user. Its ids must be names; its description, its
 * --boxes files and its artifact directory (unless the worker has its own) must lie, links
 * resolved, inside the directories the worker was allowed (`--allow`); the build's own `target` is
 * dropped: a worker writes a build only into its artifact directory. Throws one line saying what
 * is wrong.
 */
export function checkJob(data: unknown, allowed: string[], ownArtifacts?: string): JobData {
  const job = data as Partial<JobData> | null;
  const build = job?.build as Partial<MatrixBuild> | undefined;
  const texts = (values: unknown) => Array.isArray(values) && values.every((value) => typeof value === 'string');
  if (typeof job?.runId !== 'string' || !SAFE_NAME.test(job.runId) || typeof build?.id !== 'string' || !SAFE_NAME.test(build.id)) throw new Error('the job has no run or build id fit for a path');
  if (typeof build.box !== 'string' || typeof build.arch !== 'string' || !isArch(build.arch) || typeof build.description !== 'string' || typeof job.artifacts !== 'string') throw new Error('the job does not name a box, an architecture, a description and an artifact directory');
  if (!texts(build.args) || !texts(build.tags) || (build.registryFiles !== undefined && !texts(build.registryFiles))) throw new Error('the job\'s arguments, tags and box files must be lists of strings');
  const retries = build.retries;
  if (!Number.isInteger(retries) || retries! < 0 || retries! > MAX_RETRIES || (build.timeoutSeconds !== undefined && !(Number(build.timeoutSeconds) > 0))) throw new Error(`the job's retries (0 to ${MAX_RETRIES}) or timeout are not what a matrix file allows`);
  // The worker's own --artifacts replaces the job's, which then needs no checking.
  for (const path of [build.description, ...(ownArtifacts ? [] : [job.artifacts]), ...(build.registryFiles ?? [])]) {
    if (!isAbsolute(path) || !allowed.some((root) => isWithin(resolvedPath(path), root))) throw new Error(`the job names ${path}, which is outside the directories this worker may use (${allowed.join(', ')}; see --allow)`);
  }
  return { ...(job as JobData), artifacts: ownArtifacts ?? job.artifacts, build: { ...(build as MatrixBuild), target: undefined } };
}

/** A path with its links resolved, as far as it exists (an artifact directory may not exist yet). */
function resolvedPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return join(resolvedPath(dirname(path)), basename(path));
  }
}

/** What a job's 'progress' says when a worker starts it. */
export interface JobStart {
  worker: string;
  attempt: number;
}

/** What a live worker announces under KEYS.worker(name). */
export interface Announcement extends Capabilities {
  name: string;
  host: string;
  pid: number;
  version: string;
  slots: number;
  /** Builds it runs now. */
  running: number;
}

/**
 * BullMQ's attempts count processor errors only: a worker that could not set up or publish a build
 * (its artifact directory unwritable, say). A build that failed is a result, and tried again by
 * runBuild itself (MatrixBuild.retries); a worker that died is BullMQ's stalled-job check.
 */
export const JOB_OPTIONS = {
  attempts: 2,
  backoff: { type: 'fixed', delay: 5000 },
  // The matrix removes its jobs once it has their results; these only bound what a matrix that died leaves.
  removeOnComplete: { age: 7 * 86_400 },
  removeOnFail: { age: 7 * 86_400 },
} as const;

/** A job whose worker died is put back this many times; once more and it fails ("stalled more than allowable limit"). */
export const MAX_STALLED = 2;

export function isAnnouncement(value: unknown): value is Announcement {
  const v = value as Partial<Announcement> | null;
  return typeof v?.name === 'string' && Array.isArray(v.arches) && Array.isArray(v.known) && Array.isArray(v.cached) && typeof v.slots === 'number';
}

/** The workers whose announcement has not expired. */
export async function liveWorkers(client: Redis): Promise<Announcement[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', KEYS.worker('*'), 'COUNT', 100);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  const values = keys.length ? await client.mget(keys) : [];
  return values.flatMap((text) => {
    try {
      const value: unknown = text && JSON.parse(text);
      return isAnnouncement(value) ? [value] : [];
    } catch {
      return [];
    }
  });
}
