import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BoxbuildError } from '../errors.js';
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

/**
 * Starts a flock(1) child on the lock file. Resolves with it once it holds the lock, or with
 * undefined when `wait` is false and the lock is held.
 */
function startHolder(lockPath: string, wait: boolean): { child: ChildProcess; locked: Promise<ChildProcess | undefined> } {
  const args = ['--exclusive', ...(wait ? [] : ['--nonblock']), '--conflict-exit-code', String(HELD), lockPath, '-c', 'echo locked; exec cat >/dev/null'];
  // In a process group of its own, so that a Ctrl-C at the terminal does not release the lock before boxbuild has cleaned up.
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  child.stdin!.on('error', () => {}); // EPIPE when the child is gone: the lock is released either way
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const locked = new Promise<ChildProcess | undefined>((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('error', (error) => reject(new BoxbuildError('internal', `cannot run flock(1) to lock ${lockPath}: ${error.message}`, { cause: error })));
    child.once('exit', (code) => {
      if (code === HELD) resolve(undefined);
      else reject(new BoxbuildError('internal', `cannot lock ${lockPath}: flock(1) ${stderr.trim() || `ended with status ${code}`}`));
    });
  });
  return { child, locked };
}

/** The release function of a held lock: clears the holder information and ends the flock(1) child. */
function releaser(lockPath: string, child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await writeFile(lockPath, '').catch(() => {});
    const exited = once(child, 'exit');
    child.stdin!.end();
    await exited;
  };
}

async function takeOver(lockPath: string, child: ChildProcess, doing: string): Promise<{ release: () => Promise<void> }> {
  await writeFile(lockPath, JSON.stringify({ pid: process.pid, doing } satisfies HolderInfo), { mode: PRIVATE_FILE });
  return { release: releaser(lockPath, child) };
}

/**
 * Takes the lock if it is free, without waiting. Returns the release function, or the pid of the
 * live holder (0 when it is not known).
 */
export async function tryLock(lockPath: string, doing = 'using it'): Promise<{ release: () => Promise<void> } | { heldBy: number }> {
  await mkdir(dirname(lockPath), { recursive: true, mode: PRIVATE_DIR });
  const { child, locked } = startHolder(lockPath, false);
  if (await locked) return takeOver(lockPath, child, doing);
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

/** Waits for the lock, announcing it once, until it is free, the signal stops the wait, or the timeout expires. */
async function waitForLock(lockPath: string, options: LockOptions): Promise<{ release: () => Promise<void> }> {
  const first = await tryLock(lockPath, options.doing);
  if (!('heldBy' in first)) return first;
  const holder = describeHolder(await readHolder(lockPath));
  options.onWait?.(`waiting for ${holder}`);
  const timeoutMs = options.timeoutMs ?? lockTimeoutMs();
  const timeout = AbortSignal.timeout(timeoutMs);
  const stop = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const { child, locked } = startHolder(lockPath, true);
  const abandon = () => {
    child.kill('SIGKILL');
    child.stdin!.end();
  };
  stop.addEventListener('abort', abandon, { once: true });
  try {
    await locked.catch((error: unknown) => {
      if (!stop.aborted) throw error;
    });
    if (options.signal?.aborted) throw stoppedError(options.signal, `stopped waiting for ${holder}`);
    if (timeout.aborted) {
      throw new BoxbuildError('boxUnavailable', `gave up after ${timeoutMs / 1000} s waiting for ${holder} (BOXBUILD_LOCK_TIMEOUT sets how long to wait)`);
    }
  } finally {
    stop.removeEventListener('abort', abandon);
  }
  return takeOver(lockPath, child, options.doing);
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
