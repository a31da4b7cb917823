import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BoxbuildError } from '../errors.js';
import { VERSION } from '../version.js';
import type { Accel } from '../qemu/profiles.js';
import type { SharingName } from '../sharing/types.js';
import type { InstalledBox } from './cache.js';

/** What a build ran on, besides the box itself. */
export interface ProvenanceInfo {
  installed: InstalledBox;
  /** The accelerator used ("container": none, the build ran in a podman container on the host's kernel). */
  accelerator: Accel | 'container';
  /** The sharing backend used ("bind": a container's bind mounts). */
  sharing: SharingName | 'bind';
}

/** The run itself: what ran in the guest, how it ended, when. */
export interface RunFacts {
  argv: string[];
  exitCode: number;
  startedAt: Date;
  endedAt: Date;
  /** Restored from a saved state rather than booted. */
  warm: boolean;
}

export const PROVENANCE_FILE = 'boxbuild-provenance.json';

/**
 * Writes `boxbuild-provenance.json` into the build's target directory: the box (name, arch,
 * version, content id), where its files came from, the sha256 of every box file, the boxbuild
 * version, accelerator and sharing backend, and the run (argv, exit status, start, end, duration).
 * Returns the file's path.
 */
export async function writeProvenance(targetDir: string, info: ProvenanceInfo, run: RunFacts): Promise<string> {
  const { manifest, dir } = info.installed;
  const provenance = {
    boxbuild: VERSION,
    box: manifest.name,
    arch: manifest.arch,
    version: manifest.version,
    contentId: basename(dir),
    files: manifest.files,
    sources: manifest.sources,
    downloads: manifest.downloads ?? {},
    accelerator: info.accelerator,
    sharing: info.sharing,
    argv: run.argv,
    exitCode: run.exitCode,
    warm: run.warm,
    startedAt: run.startedAt.toISOString(),
    endedAt: run.endedAt.toISOString(),
    durationSeconds: Number(((run.endedAt.getTime() - run.startedAt.getTime()) / 1000).toFixed(3)),
    createdAt: new Date().toISOString(),
  };
  const path = join(targetDir, PROVENANCE_FILE);
  try {
    await replaceInGuestDirectory(path, `${JSON.stringify(provenance, null, 2)}\n`);
  } catch (error) {
    // The build left a directory there: it broke the contract of the target directory, as a guest
    // breaking the protocol does. Its status alone would pass for a build with provenance.
    if ((error as NodeJS.ErrnoException).code !== 'EISDIR') throw error;
    throw new BoxbuildError('vmFailed', `cannot write the provenance file ${path}: a directory is in its place (the build exited with status ${run.exitCode})`, { cause: error });
  }
  return path;
}

/**
 * Writes a file into a directory the guest could write (a build's target): under a random name that
 * must not exist yet, never following a link (O_EXCL | O_NOFOLLOW), then renamed over `path` (which
 * replaces a link the guest left there instead of following it). Nothing is left when that fails.
 */
export async function replaceInGuestDirectory(path: string, text: string, mode = 0o644): Promise<void> {
  const partial = `${path}.${randomBytes(8).toString('hex')}.tmp`;
  const file = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    try {
      await file.writeFile(text);
    } finally {
      await file.close();
    }
    await rename(partial, path); // EISDIR: a directory is in the way
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
}
