import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isArch } from '../box/arch.js';
import { formatBytes } from '../util/size.js';
import type { CacheStats } from './cache.js';

/** Where the package files of one box and architecture are kept: `<cache>/packages/<box>/<arch>/<host>/<path>`. */
export function packageCacheDir(root: string, box: string, arch: string): string {
  return join(root, 'packages', box, arch);
}

/** How long a package file that no build asked for stays in the cache (`box prune`). */
export const UNUSED_DAYS = 30;

/** A partial download older than this belongs to no live build. */
const PARTIAL_MAX_AGE_MS = 24 * 3600_000;

interface CachedFile {
  path: string;
  size: number;
  /** The last time a build used it (the proxy touches a file it serves). */
  usedMs: number;
}

async function filesUnder(dir: string): Promise<CachedFile[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const files = await Promise.all(
    names.map(async (name) => {
      const path = join(dir, name);
      const info = await stat(path).catch(() => undefined);
      return info?.isFile() ? { path, size: info.size, usedMs: info.mtimeMs } : undefined;
    }),
  );
  return files.filter((file): file is CachedFile => file !== undefined);
}

/** The size of each box variant's package cache, by "box/arch". */
export async function packageCacheSizes(root: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const box of await readdir(join(root, 'packages')).catch(() => [] as string[])) {
    for (const arch of await readdir(join(root, 'packages', box)).catch(() => [] as string[])) {
      const files = await filesUnder(packageCacheDir(root, box, arch));
      sizes.set(`${box}/${arch}`, files.reduce((sum, file) => sum + file.size, 0));
    }
  }
  return sizes;
}

/**
 * What `box prune` drops of the package caches: every file with `all`; else package files no build
 * used for UNUSED_DAYS, partial downloads of no live build, and the caches of boxes not in the cache.
 */
export async function packageCacheLeftovers(root: string, isCached: (box: string, arch: string) => boolean, all: boolean, now = Date.now()): Promise<string[]> {
  const paths: string[] = [];
  for (const box of await readdir(join(root, 'packages')).catch(() => [] as string[])) {
    for (const arch of await readdir(join(root, 'packages', box)).catch(() => [] as string[])) {
      const dir = packageCacheDir(root, box, arch);
      if (all || !isArch(arch) || !isCached(box, arch)) {
        paths.push(dir);
        continue;
      }
      for (const file of await filesUnder(dir)) {
        const partial = /\.part-[0-9a-f]+$/.test(file.path);
        if (now - file.usedMs > (partial ? PARTIAL_MAX_AGE_MS : UNUSED_DAYS * 24 * 3600_000)) paths.push(file.path);
      }
    }
  }
  return paths;
}

/** Removes one variant's package cache (`box remove`). */
export async function removePackageCache(root: string, box: string, arch: string): Promise<void> {
  await rm(packageCacheDir(root, box, arch), { recursive: true, force: true });
}

/** One line on what the package cache did for a build; `passedBytes`: everything else the egress proxy passed. */
export function describeCacheUse(stats: CacheStats, passedBytes: number): string {
  const files = (count: number) => `${count} ${count === 1 ? 'package' : 'packages'}`;
  const unchecked = stats.unchecked ? `, ${files(stats.unchecked)} (${formatBytes(stats.uncheckedBytes)}) passed on but not kept (no signed index vouched for them)` : '';
  return `package cache: ${files(stats.hits)} (${formatBytes(stats.hitBytes)}) from the cache, ${files(stats.misses)} (${formatBytes(stats.missBytes)}) downloaded and kept${unchecked}, ${formatBytes(passedBytes)} of indexes and other traffic`;
}
