import { open, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes an exclusive lock file (created with O_EXCL, holding our pid), taking over one left by a
 * process that no longer exists. Returns the release function, or the pid of the live holder.
 */
export async function tryLock(lockPath: string): Promise<{ release: () => Promise<void> } | { heldBy: number }> {
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return { release: () => rm(lockPath, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (!(holder > 0) || isAlive(holder)) return { heldBy: holder };
    await rm(lockPath, { force: true });
  }
}

/** Runs `task` while holding the lock, waiting for it as long as it takes; waiting is announced once. */
export async function withLock<T>(lockPath: string, task: () => Promise<T>, onWait?: () => void): Promise<T> {
  let lock = await tryLock(lockPath);
  if ('heldBy' in lock) onWait?.();
  while ('heldBy' in lock) {
    await sleep(200);
    lock = await tryLock(lockPath);
  }
  try {
    return await task();
  } finally {
    await lock.release();
  }
}
