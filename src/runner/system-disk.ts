import { join, resolve } from 'node:path';
import type { InstalledBox } from '../box/cache.js';
import { tryLock } from '../box/lock.js';
import { BoxbuildError } from '../errors.js';
import { lastWords, runChild } from '../util/child.js';
import type { DiskSpec } from '../qemu/argv.js';

export interface AttachedDisk {
  disk?: DiskSpec;
  /** The run's throwaway overlay (snapshot runs). */
  overlay?: string;
  /** Creates the overlay, reading from `backing` (a saved state's disk) or else the cached disk. Call it before QEMU starts. */
  prepare: (backing?: string) => Promise<void>;
  release: () => Promise<void>;
}

/** Creates a qcow2 overlay that takes every write and reads the rest from `backing` (never written). */
export async function createOverlay(overlay: string, backing: string, backingFormat: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  const result = await runChild('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', backing, overlay]);
  if (result.exitCode !== 0) throw new BoxbuildError('vmFailed', `cannot create the disk overlay: ${lastWords(result)}`);
}

/**
 * The box's system disk for one run. By default a qcow2 overlay in the run's private directory
 * takes every write and goes away with it: the cached image is only ever read (QEMU opens a
 * backing file read-only), also when the run is killed. Without snapshot the run writes to the
 * cached image itself, under a lock, so that two such runs never share one disk.
 */
export async function attachSystemDisk(installed: InstalledBox, runDir: string, snapshot: boolean): Promise<AttachedDisk> {
  const file = installed.manifest.files.system;
  const nothing = async () => {};
  if (!file) return { prepare: nothing, release: nothing };
  const base = resolve(installed.dir, file.name);
  if (snapshot) {
    const overlay = join(runDir, 'system-overlay.qcow2');
    const prepare = (backing = base) => createOverlay(overlay, backing);
    return { disk: { path: overlay, format: 'qcow2', cache: 'unsafe' }, overlay, prepare, release: nothing };
  }
  const lock = await tryLock(`${base}.lock`);
  if ('heldBy' in lock) {
    throw new BoxbuildError('vmFailed', `box ${installed.manifest.name} (${installed.manifest.arch}) is in use by another --no-snapshot run (pid ${lock.heldBy})`);
  }
  return { disk: { path: base, format: 'qcow2', cache: 'writeback' }, prepare: nothing, release: lock.release };
}
