import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { waitFor } from '../util/abort.js';
import { parseDurationMs } from '../util/size.js';
import { stoppedError } from './failures.js';
import { PRIVATE_DIR, PRIVATE_FILE } from './modes.js';

/*
 * A lock is an exclusive flock(2) on the lock file, held by a `flock(1)` child whose stdin is a
 * pipe from this process: the lock lasts while that pipe is open. When this process ends in any
 * way (even SIGKILL) the pipe closes, the child ends and the kernel releases the lock, so a lock
 * can never outlive its holder; the file's content (who holds it, for the waiting message) is
 * only information. Node has no flock or fcntl lock of its own without a native addon.
 */

/** flock(1)'s exit status when the lock is held and it was told not to wait. */
const HELD = 75;

/** How long a waiter waits for a lock before giving up: BOXBUILD_LOCK_TIMEOUT (a duration), default 1 h. */
export function lockTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return env.BOXBUILD_LOCK_TIMEOUT ? parseDurationMs(env.BOXBUILD_LOCK_TIMEOUT, 'BOXBUILD_LOCK_TIMEOUT') : 3_600_000;
}

interface HolderInfo {
  pid: number;
  doing: string;
}

/** Who holds a lock, as its holder wrote it; undefined when unreadable (e.g. written by an older boxbuild). */
async function readHolder(lockPath: string): Promise<HolderInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(lockPath, 'utf8')) as Partial<HolderInfo>;
    return Number.isInteger(info.pid) && typeof info.doing === 'string' ? (info as HolderInfo) : undefined;
  } catch {
    return undefined;
  }
}

const describeHolder = (holder: HolderInfo | undefined) => (holder ? `pid ${holder.pid}, ${holder.doing}` : 'another boxbuild');

/** A flock(1) child on a lock file. */
interface Holder {
  /** Resolves true once the child holds the lock, false when it was told not to wait and the lock is held. */
  locked: Promise<boolean>;
  /** Ends the child, whatever it is doing (waiting, or holding the lock: the kernel releases it); resolves once it is gone. */
  end(): Promise<void>;
}

/** Starts a flock(1) child on the lock file, which waits for the lock when `wait` is true. */
function startHolder(lockPath: string, wait: boolean): Holder {
  // --no-fork: flock(1) becomes the shell that holds the lock, one process that is boxbuild's own
  // child (a command it forked would be left to init to reap once killed, and an init that reaps
  // late, as some containers' do, would hold up every release). The shell reads its stdin to the
  // end, which comes when boxbuild ends; the lock's path stays on its command line.
  const holder = ['sh', '-c', 'echo locked; while read -r _; do :; done', 'boxbuild-lock', lockPath];
  const args = ['--exclusive', '--no-fork', ...(wait ? [] : ['--nonblock']), '--conflict-exit-code', String(HELD), lockPath, ...holder];
  // In a process group of its own, so that a Ctrl-C at the terminal does not release the lock before
  // boxbuild has cleaned up.
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  child.stdin!.on('error', () => {}); // EPIPE when the child is gone: the lock is released either way
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const locked = new Promise<boolean>((resolve, reject) => {
    child.stdout!.once('data', () => {
      resolve(true);
      // A held lock never keeps boxbuild running: should a way out forget to release it, boxbuild still
      // exits, and the kernel releases the lock with it.
      child.unref();
      for (const pipe of [child.stdin, child.stdout, child.stderr]) (pipe as unknown as { unref(): void }).unref();
    });
    child.once('error', (error) => reject(new BoxbuildError('internal', `cannot run flock(1) to lock ${lockPath}: ${error.message}`, { cause: error })));
    child.once('exit', (code) => {
      if (code === HELD) resolve(false);
      else reject(new BoxbuildError('internal', `cannot lock ${lockPath}: flock(1) ${stderr.trim() || `ended with status ${code}`}`));
    });
  });
  const end = async () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // it ended meanwhile
      }
    }
    child.ref();
    await gone;
  };
  return { locked, end };
}

/**
 * The lock, held by `holder`: says who holds it, for those who wait, and returns its release
 * function (which clears that and ends the holder; later calls do nothing). The holder's
 * information is only that: a full disk that cannot take it does not stop the work (nor `box
 * prune`, which frees the disk).
 */
async function takeOver(lockPath: string, holder: Holder, doing: string): Promise<{ release: () => Promise<void> }> {
  await writeFile(lockPath, JSON.stringify({ pid: process.pid, doing } satisfies HolderInfo), { mode: PRIVATE_FILE }).catch(() => {});
  let released: Promise<void> | undefined;
  const release = async () => {
    await writeFile(lockPath, '').catch(() => {});
    await holder.end();
  };
  return { release: () => (released ??= release()) };
}

/**
 * Takes the lock if it is free, without waiting. Returns the release function, or the pid of the
 * live holder (0 when it is not known).
 */
export async function tryLock(lockPath: string, doing = 'using it'): Promise<{ release: () => Promise<void> } | { heldBy: number }> {
  await mkdir(dirname(lockPath), { recursive: true, mode: PRIVATE_DIR });
  const holder = startHolder(lockPath, false);
  if (await holder.locked) return takeOver(lockPath, holder, doing);
  return { heldBy: (await readHolder(lockPath))?.pid ?? 0 };
}

export interface LockOptions {
  /** What the holder does, for the message of those who wait: "making box debian (x86_64)". */
  doing: string;
  /** Told once when the lock is held by someone else: "waiting for pid N, making box debian (x86_64)". */
  onWait?: (line: string) => void;
  /** Stops the wait (Ctrl-C). */
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * Waits for the lock, announcing it once, until it is free, the signal stops the wait, or the
 * timeout expires. A wait given up ends its flock(1) child before it rejects.
 */
async function waitForLock(lockPath: string, options: LockOptions): Promise<{ release: () => Promise<void> }> {
  const first = await tryLock(lockPath, options.doing);
  if (!('heldBy' in first)) return first;
  const holder = describeHolder(await readHolder(lockPath));
  options.onWait?.(`waiting for ${holder}`);
  const timeoutMs = options.timeoutMs ?? lockTimeoutMs();
  const timeout = AbortSignal.timeout(timeoutMs);
  const stop = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const waiter = startHolder(lockPath, true);
  try {
    const won = await waitFor(waiter.locked, stop).catch((error: unknown) => {
      if (stop.aborted) return false;
      throw error;
    });
    if (options.signal?.aborted) throw stoppedError(options.signal, `stopped waiting for ${holder}`);
    if (!won) {
      throw new BoxbuildError('boxUnavailable', `gave up after ${timeoutMs / 1000} s waiting for ${holder} (BOXBUILD_LOCK_TIMEOUT sets how long to wait)`);
    }
  } catch (error) {
    await waiter.end();
    throw error;
  }
  return takeOver(lockPath, waiter, options.doing);
}

/** Runs `task` while holding the lock; waiting for it is announced once and bounded (see LockOptions). */
export async function withLock<T>(lockPath: string, task: () => Promise<T>, options: LockOptions): Promise<T> {
  const lock = await waitForLock(lockPath, options);
  try {
    return await task();
  } finally {
    await lock.release();
  }
}
