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
 * Runs `task` while holding an exclusive lock file (created with O_EXCL, holding our pid).
 * A lock left by a process that no longer exists is taken over. Waiting is announced once.
 */
export async function withLock<T>(lockPath: string, task: () => Promise<T>, onWait?: () => void): Promise<T> {
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
    if (holder > 0 && !isAlive(holder)) {
      await rm(lockPath, { force: true });
      continue;
    }
    if (!announced) onWait?.();
    announced = true;
    await sleep(200);
  }
  try {
    return await task();
  } finally {
    await rm(lockPath, { force: true });
  }
}
