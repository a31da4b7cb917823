import { lstat, readdir, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { removeImportedEntry } from './import/entries.js';
import { BoxbuildError } from '../errors.js';
import { ImageRefused, inspectImageFile } from '../qemu/image-file.js';
import { type Arch, isArch } from './arch.js';
import { allLogs } from './logs.js';
import { staleStatePaths } from './states.js';
import { type InstalledBox, type ManifestFile, boxArchDir, boxLockPath, boxTmpDir, readInstalled } from './cache.js';
import { hashFile } from './hash.js';
import { tryLock, withLock } from './lock.js';
import { packageCacheLeftovers, removePackageCache } from '../package-cache/store.js';

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

/** Re-hashes every file of an installed version; returns one line per file that is missing or changed, or a system disk that names other files. */
export async function verifyBox(installed: InstalledBox): Promise<string[]> {
  const problems: string[] = [];
  for (const file of Object.values(installed.manifest.files) as ManifestFile[]) {
    const path = join(installed.dir, file.name);
    const actual = await hashFile(path).catch(() => undefined);
    if (actual === undefined) problems.push(`${file.name}: missing`);
    else if (actual !== file.sha256) problems.push(`${file.name}: sha256 is ${actual}, the manifest says ${file.sha256}`);
  }
  const system = installed.manifest.files.system;
  if (system) {
    const refused = await inspectImageFile(join(installed.dir, system.name)).then(() => undefined, (error: Error) => (error instanceof ImageRefused ? error.message : undefined));
    if (refused) problems.push(`${system.name} ${refused}`);
  }
  return problems;
}

/** Removes a box from the cache (one architecture, or all); returns the architectures removed. */
export async function removeBox(root: string, name: string, arch: Arch | undefined, log: (line: string) => void, signal?: AbortSignal): Promise<Arch[]> {
  const arches = (await entries(join(root, 'boxes', name))).filter(isArch).filter((cached) => !arch || cached === arch);
  if (arches.length === 0) throw new BoxbuildError('usage', `box "${name}"${arch ? ` (${arch})` : ''} is not in the cache`);
  for (const cached of arches) {
    const remove = async () => {
      await rm(boxArchDir(root, name, cached), { recursive: true, force: true });
      await rm(boxTmpDir(root, name, cached), { recursive: true, force: true });
    };
    await withLock(boxLockPath(root, name, cached), remove, { doing: `removing box ${name} (${cached})`, onWait: log, signal });
    await removePackageCache(root, name, cached);
  }
  if ((await entries(join(root, 'boxes', name))).length === 0) {
    await rm(join(root, 'boxes', name), { recursive: true, force: true });
    await removeImportedEntry(root, name);
  }
  return arches;
}

export interface PruneResult {
  /** Directories and files removed (with `dryRun`: that would be). */
  removed: string[];
  /** Bytes of disk space they held that are free now. */
  freed: number;
  /** What was left alone because a live process owns it, one line each. */
  skipped: string[];
}

/**
 * The disk space removing `paths` frees: allocated blocks, not apparent sizes (a sparse file or
 * a qcow2 disk holds less than its length), each inode counted once, and a file only when every
 * one of its hard links goes (a file the current version shares with an old one frees nothing).
 */
export async function spaceFreed(paths: string[]): Promise<number> {
  const inodes = new Map<string, { bytes: number; links: number; seen: number }>();
  const walk = async (path: string): Promise<void> => {
    const info = await lstat(path).catch(() => undefined);
    if (!info) return;
    const key = `${info.dev}:${info.ino}`;
    const inode = inodes.get(key) ?? { bytes: info.blocks * 512, links: info.isDirectory() ? 1 : info.nlink, seen: 0 };
    inode.seen++;
    inodes.set(key, inode);
    if (info.isDirectory() && inode.seen === 1) await Promise.all((await entries(path)).map((entry) => walk(join(path, entry))));
  };
  for (const path of paths) await walk(path);
  return [...inodes.values()].reduce((sum, inode) => sum + (inode.seen >= inode.links ? inode.bytes : 0), 0);
}

/** What prune may remove of one variant: versions other than the current one, and its tmp directory's content. */
async function variantLeftovers(root: string, name: string, arch: Arch): Promise<string[]> {
  const base = boxArchDir(root, name, arch);
  const current = await readlink(join(base, 'current')).catch(() => undefined);
  const versions = (await entries(base)).filter((entry) => entry !== 'current' && entry !== current).map((entry) => join(base, entry));
  const tmp = boxTmpDir(root, name, arch);
  return [...versions, ...(await entries(tmp)).map((entry) => join(tmp, entry))];
}

/** Every variant with a version directory or a tmp directory. */
async function variantsWithFiles(root: string): Promise<{ name: string; arch: Arch }[]> {
  const found = new Map<string, { name: string; arch: Arch }>();
  for (const area of ['boxes', 'tmp']) {
    for (const name of await entries(join(root, area))) {
      for (const arch of (await entries(join(root, area, name))).filter(isArch)) found.set(`${name}/${arch}`, { name, arch });
    }
  }
  return [...found.values()];
}

/**
 * Drops what no build needs any more: versions other than each variant's current one, saved VM
 * states of other box versions or replaced by newer ones, the logs of past builds, everything under `<cache>/tmp`
 * (partial downloads, work directories of interrupted runs), package files no build used for
 * a while (all of them with `allPackages`), and the run directories in `runDirsIn` (TMPDIR) of
 * runs that were killed (see util/run-dirs). A variant whose lock a live process holds (a
 * download, a make) is skipped whole, and so is a state still being saved. With `dryRun`, nothing
 * is removed: the result says what would be, and the space that would be freed.
 */
export async function pruneCache(root: string, options: { allPackages?: boolean; dryRun?: boolean; runDirsIn?: string } = {}): Promise<PruneResult> {
  const result: PruneResult = { removed: [], freed: 0, skipped: [] };
  const drop = async (paths: string[]) => {
    result.removed.push(...paths);
    if (options.dryRun) return;
    result.freed += await spaceFreed(paths);
    for (const path of paths) await rm(path, { recursive: true, force: true });
  };
  for (const { name, arch } of await variantsWithFiles(root)) {
    const lock = await tryLock(boxLockPath(root, name, arch), `pruning box ${name} (${arch})`);
    if ('heldBy' in lock) {
      result.skipped.push(`box ${name} (${arch}): in use by ${lock.heldBy ? `pid ${lock.heldBy}` : 'another boxbuild'}`);
      continue;
    }
    try {
      await drop(await variantLeftovers(root, name, arch));
    } finally {
      await lock.release();
    }
  }
  await drop(await staleStatePaths(root));
  await drop(await allLogs(root));
  const cached = new Set((await listCached(root)).map((variant) => `${variant.name}/${variant.arch}`));
  await drop(await packageCacheLeftovers(root, (box, arch) => cached.has(`${box}/${arch}`), options.allPackages ?? false));
  // Not a variant's: leftovers of older boxbuild versions or of something else.
  for (const name of await entries(join(root, 'tmp'))) {
    const dir = join(root, 'tmp', name);
    const inside = await entries(dir);
    const foreign = inside.filter((entry) => !isArch(entry)).map((entry) => join(dir, entry));
    await drop(foreign.length === inside.length ? [dir] : foreign);
  }
  if (options.runDirsIn) await drop(await (await import('../util/run-dirs.js')).deadRunDirs(options.runDirsIn));
  if (options.dryRun) result.freed = await spaceFreed(result.removed);
  return result;
}
