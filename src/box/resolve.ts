import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { guestFilesDigest, makeDebianBox } from '../guest/make-debian.js';
import type { Arch } from './arch.js';
import { type InstalledBox, readInstalled } from './cache.js';
import { withLock } from './lock.js';
import type { BoxEntry } from './registry.js';

export interface BoxRequest {
  cacheRoot: string;
  box: BoxEntry;
  arch: Arch;
  log: (line: string) => void;
}

const MAKERS: Record<string, typeof makeDebianBox> = { debian: makeDebianBox };

/** A locally made box is current when it carries this boxbuild's guest files. */
async function isCurrent(installed: InstalledBox | undefined): Promise<boolean> {
  return installed !== undefined && installed.manifest.sources['boxbuild-guest'] === (await guestFilesDigest());
}

/**
 * Makes a locally made box (e.g. `debian`) under a lock, so that concurrent boxbuilds make it once.
 * With `onlyIfOutdated`, a current box (perhaps installed by another process meanwhile) is kept.
 */
export async function makeBox(request: BoxRequest, onlyIfOutdated = false): Promise<InstalledBox> {
  const { box, arch, cacheRoot, log } = request;
  const maker = box.make ? MAKERS[box.make] : undefined;
  if (!maker) throw new BoxbuildError('usage', `box "${box.name}" is not made locally (it has no known "make" recipe)`);
  await mkdir(cacheRoot, { recursive: true });
  return withLock(
    join(cacheRoot, `make-${box.name}-${arch}.lock`),
    async () => {
      const installed = await readInstalled(cacheRoot, box.name, arch);
      if (onlyIfOutdated && (await isCurrent(installed))) return installed!;
      if (installed && onlyIfOutdated) log(`box ${box.name} (${arch}) was made by another boxbuild version; making it again`);
      return maker({ name: box.name, cacheRoot, arch, log });
    },
    () => log(`waiting for another boxbuild that is making box ${box.name} (${arch})`),
  );
}

/** Returns the installed box, making it first when it is a local box that is missing or outdated. */
export async function ensureBox(request: BoxRequest): Promise<InstalledBox> {
  const { cacheRoot, box, arch } = request;
  const installed = await readInstalled(cacheRoot, box.name, arch);
  if (!box.make) {
    if (installed) return installed;
    throw new BoxbuildError('boxUnavailable', `box "${box.name}" (${arch}) is not in the cache`);
  }
  return installed && (await isCurrent(installed)) ? installed : makeBox(request, true);
}
