import { mkdir, readdir, readlink, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { type Arch, isArch } from './arch.js';
import { staleStatePaths } from './states.js';
import { type InstalledBox, type ManifestFile, boxArchDir, boxLockPath, boxTmpDir, readInstalled } from './cache.js';
import { hashFile } from './download.js';
import { withLock } from './lock.js';

/** A box variant in the cache. */
export interface CachedVariant {
  name: string;
  arch: Arch;
  installed?: InstalledBox;
  /** Bytes of the current version's files. */
  size: number;
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then((info) => info.size, () => 0);
}

/** Runs `task` under the lock of one box variant (the lock that downloads and makes take too). */
async function underLock<T>(root: string, name: string, arch: Arch, task: () => Promise<T>): Promise<T> {
  const lockPath = boxLockPath(root, name, arch);
  await mkdir(dirname(lockPath), { recursive: true });
  return withLock(lockPath, task);
}

/** Every box variant the cache holds (current version or not), sorted by name and architecture. */
export async function listCached(root: string): Promise<CachedVariant[]> {
  const variants: CachedVariant[] = [];
  for (const name of (await entries(join(root, 'boxes'))).sort()) {
    for (const arch of (await entries(join(root, 'boxes', name))).sort()) {
      if (!isArch(arch)) continue;
      const installed = await readInstalled(root, name, arch);
      const files = installed ? (Object.values(installed.manifest.files) as ManifestFile[]) : [];
      const sizes = await Promise.all(files.map((file) => sizeOf(join(installed!.dir, file.name))));
      variants.push({ name, arch, installed, size: sizes.reduce((sum, size) => sum + size, 0) });
    }
  }
  return variants;
}

/** Re-hashes every file of an installed version; returns one line per file that is missing or changed. */
export async function verifyBox(installed: InstalledBox): Promise<string[]> {
  const problems: string[] = [];
  for (const file of Object.values(installed.manifest.files) as ManifestFile[]) {
    const path = join(installed.dir, file.name);
    const actual = await hashFile(path).catch(() => undefined);
    if (actual === undefined) problems.push(`${file.name}: missing`);
    else if (actual !== file.sha256) problems.push(`${file.name}: sha256 is ${actual}, the manifest says ${file.sha256}`);
  }
  return problems;
}

/** Removes a box from the cache (one architecture, or all); returns the architectures removed. */
export async function removeBox(root: string, name: string, arch?: Arch): Promise<Arch[]> {
  const arches = (await entries(join(root, 'boxes', name))).filter(isArch).filter((cached) => !arch || cached === arch);
  if (arches.length === 0) throw new BoxbuildError('usage', `box "${name}"${arch ? ` (${arch})` : ''} is not in the cache`);
  for (const cached of arches) {
    await underLock(root, name, cached, async () => {
      await rm(boxArchDir(root, name, cached), { recursive: true, force: true });
      await rm(boxTmpDir(root, name, cached), { recursive: true, force: true });
    });
  }
  if ((await entries(join(root, 'boxes', name))).length === 0) await rm(join(root, 'boxes', name), { recursive: true, force: true });
  return arches;
}

export interface PruneResult {
  /** Directories and files removed. */
  removed: string[];
  /** Bytes they held. */
  freed: number;
}

async function du(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isDirectory()) return info?.size ?? 0;
  const sizes = await Promise.all((await entries(path)).map((entry) => du(join(path, entry))));
  return sizes.reduce((sum, size) => sum + size, 0);
}

/**
 * Drops what no build needs any more: versions other than each variant's current one, saved VM
 * states of other box versions or replaced by newer ones, and everything under `<cache>/tmp`
 * (partial downloads, staging directories of interrupted runs).
 * Each variant is pruned under its lock, so a download in progress is not disturbed.
 */
export async function pruneCache(root: string): Promise<PruneResult> {
  const result: PruneResult = { removed: [], freed: 0 };
  const drop = async (path: string) => {
    result.freed += await du(path);
    await rm(path, { recursive: true, force: true });
    result.removed.push(path);
  };
  for (const name of await entries(join(root, 'boxes'))) {
    for (const arch of (await entries(join(root, 'boxes', name))).filter(isArch)) {
      await underLock(root, name, arch, async () => {
        const base = boxArchDir(root, name, arch);
        const current = await readlink(join(base, 'current')).catch(() => undefined);
        for (const entry of await entries(base)) {
          if (entry !== 'current' && entry !== current) await drop(join(base, entry));
        }
      });
    }
  }
  for (const path of await staleStatePaths(root)) await drop(path);
  for (const name of await entries(join(root, 'tmp'))) {
    const dir = join(root, 'tmp', name);
    for (const entry of await entries(dir)) {
      const path = join(dir, entry);
      if (!isArch(entry)) await drop(path); // not boxbuild's: a leftover of something else
      else await underLock(root, name, entry, async () => Promise.all((await entries(path)).map((file) => drop(join(path, file)))));
    }
  }
  return result;
}
