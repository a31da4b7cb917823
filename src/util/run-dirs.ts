import { readFileSync, readlinkSync } from 'node:fs';
import { lstat, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { statFields } from './proc.js';

/*
 * A run's private directory (`$TMPDIR/boxbuild-XXXXXX`, `boxbuild-image-XXXXXX`) holds its sockets
 * and, while a warm state is saved, the guest's RAM (about 100 MB); that of a build host's run for
 * --host (`boxbuild-remote-XXXXXX`) the description and target. A run killed by SIGKILL (or a
 * crash, or a power cut) cannot remove it, so a run marks its directory with its owner, and a later
 * run or `box prune` removes the directories whose owner is gone. An owner is a process as the
 * kernel tells processes apart: its pid, its start time (a pid is reused, a start time with it is
 * not), the boot they are counted in and its pid namespace. Only this user's directories of that
 * name, not links, marked, whose owner is known dead, are removed: a directory of a live run, of a
 * run on another host sharing TMPDIR, or of one in another pid namespace, is never touched.
 */

const OWNER_FILE = 'owner';
const RUN_DIR_NAME = /^boxbuild-(?:image-|remote-)?[A-Za-z0-9]{6}$/;

interface Owner {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks after boot at which the process started. */
  start: string;
  boot: string;
  host: string;
  pidNamespace: string;
}

/** Where this process runs: the boot, the host and the pid namespace; undefined without /proc. */
function readPlace(): Omit<Owner, 'pid' | 'start'> | undefined {
  try {
    return {
      boot: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
      host: hostname(),
      pidNamespace: readlinkSync('/proc/self/ns/pid'),
    };
  } catch {
    return undefined;
  }
}

/** The start time of process `pid` (field 22 of its stat), undefined when there is none. */
const startTime = (pid: number): string | undefined => statFields(pid)?.[19];

/** This process's place and start time: they cannot change while it runs, so they are read once. */
let self: { place?: Omit<Owner, 'pid' | 'start'>; start?: string } | undefined;
const here = () => (self ??= { place: readPlace(), start: startTime(process.pid) });

/**
 * Marks `dir` as this process's run directory. Never fails: a directory left unmarked (no /proc, a
 * full disk) is only never swept, and the run itself still removes it when it ends.
 */
export async function markRunDir(dir: string): Promise<void> {
  const { place: where, start } = here();
  if (!where || !start) return;
  const owner: Owner = { pid: process.pid, start, ...where };
  // Whole or not at all (temp file + rename): a sweep never reads half an owner.
  const temp = join(dir, `${OWNER_FILE}.new`);
  await writeFile(temp, JSON.stringify(owner), { mode: 0o600 })
    .then(() => rename(temp, join(dir, OWNER_FILE)))
    .catch(() => {});
}

async function readOwner(dir: string, uid: number): Promise<Owner | undefined> {
  const path = join(dir, OWNER_FILE);
  const info = await lstat(path).catch(() => undefined);
  if (!info?.isFile() || info.uid !== uid || info.size > 4096) return undefined;
  try {
    const owner = JSON.parse(await readFile(path, 'utf8')) as Partial<Owner>;
    const valid = Number.isInteger(owner.pid) && (['start', 'boot', 'host', 'pidNamespace'] as const).every((key) => typeof owner[key] === 'string');
    return valid ? (owner as Owner) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the owner is known to be gone; false when it lives or cannot be told (another host or pid namespace). */
function isGone(owner: Owner, where: NonNullable<ReturnType<typeof readPlace>>): boolean {
  if (owner.host !== where.host) return false;
  if (owner.boot !== where.boot) return true; // the machine was restarted since
  if (owner.pidNamespace !== where.pidNamespace) return false;
  return startTime(owner.pid) !== owner.start;
}

/** The run directories in `tmp` whose owner is gone. */
export async function deadRunDirs(tmp: string): Promise<string[]> {
  const where = here().place;
  const uid = process.getuid?.();
  if (!where || uid === undefined) return [];
  const dead: string[] = [];
  for (const name of (await readdir(tmp).catch(() => [] as string[])).filter((entry) => RUN_DIR_NAME.test(entry))) {
    const dir = join(tmp, name);
    const info = await lstat(dir).catch(() => undefined);
    if (!info?.isDirectory() || info.uid !== uid) continue;
    const owner = await readOwner(dir, uid);
    if (owner && isGone(owner, where)) dead.push(dir);
  }
  return dead;
}

/**
 * Removes the run directories in `tmp` whose owner is gone (at a run's start); returns those
 * removed. Never fails: what cannot be removed now is left for the next time.
 */
export async function sweepDeadRunDirs(tmp: string): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of await deadRunDirs(tmp)) {
    if (await rm(dir, { recursive: true, force: true }).then(() => true, () => false)) removed.push(dir);
  }
  return removed;
}
