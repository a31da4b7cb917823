import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { makeDebianBox } from '../guest/make-debian.js';
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

/**
 * Makes a locally made box (e.g. `debian`) under a lock, so that concurrent boxbuilds make it
 * once. With `onlyIfMissing`, a box that another process installed meanwhile is used as it is.
 */
export async function makeBox(request: BoxRequest, onlyIfMissing = false): Promise<InstalledBox> {
  const { box, arch, cacheRoot, log } = request;
  const maker = box.make ? MAKERS[box.make] : undefined;
  if (!maker) throw new BoxbuildError('usage', `box "${box.name}" is not made locally (it has no known "make" recipe)`);
  await mkdir(cacheRoot, { recursive: true });
  const lock = join(cacheRoot, `make-${box.name}-${arch}.lock`);
  return withLock(
    lock,
    async () => (onlyIfMissing ? await readInstalled(cacheRoot, box.name, arch) : undefined) ?? maker({ name: box.name, cacheRoot, arch, log }),
    () => log(`waiting for another boxbuild that is making box ${box.name} (${arch})`),
  );
}

/** Returns the installed box, making it first when it is a local box that is missing. */
export async function ensureBox(request: BoxRequest): Promise<InstalledBox> {
  const installed = await readInstalled(request.cacheRoot, request.box.name, request.arch);
  if (installed) return installed;
  if (!request.box.make) {
    throw new BoxbuildError('boxUnavailable', `box "${request.box.name}" (${request.arch}) is not in the cache`);
  }
  return makeBox(request, true);
}
