import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { InstalledBox } from '../../box/cache.js';
import { tryLock } from '../../box/lock.js';
import { BoxbuildError } from '../../errors.js';
import { lastWords, runChild } from '../../util/child.js';
import type { DiskLayer, DiskSpec } from '../../qemu/argv.js';
import { type ImageFile, selfContainedImage } from '../../qemu/image-file.js';

export interface AttachedDisk {
  disk?: DiskSpec;
  /** The run's throwaway overlay (snapshot runs). */
  overlay?: string;
  /**
   * Creates the overlay over the cached disk, or from `saved` (a saved state's disk: the overlay the
   * saved guest knew, itself over the cached disk). Call it before QEMU starts.
   */
  prepare: (saved?: string) => Promise<void>;
  release: () => Promise<void>;
}

/**
 * Creates a qcow2 overlay that takes every write and reads the rest from `backing` (never written),
 * whose format and size boxbuild read itself: qemu-img does not open the backing file (-u), which
 * could name other files, and QEMU is told the backing layer (DiskLayer) instead of reading it here.
 */
export async function createOverlay(overlay: string, backing: { path: string } & ImageFile): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-u', '-F', backing.format, '-b', backing.path, overlay, String(backing.size)];
  const result = await runChild('qemu-img', args);
  if (result.exitCode !== 0) throw new BoxbuildError('vmFailed', `cannot create the disk overlay: ${lastWords(result)}`);
}

/**
 * The box's system disk for one run. By default a qcow2 overlay in the run's private directory
 * takes every write and goes away with it: the cached image is only ever read (QEMU opens a
 * backing file read-only), also when the run is killed. Without snapshot the run writes to the
 * cached image itself, under a lock, so that two such runs never share one disk. The cached image
 * must name no other file (it came from a registry's mirror, or a cache that may have been changed).
 */
export async function attachSystemDisk(installed: InstalledBox, runDir: string, snapshot: boolean): Promise<AttachedDisk> {
  const file = installed.manifest.files.system;
  const nothing = async () => {};
  if (!file) return { prepare: nothing, release: nothing };
  const path = resolve(installed.dir, file.name);
  const { name, arch } = installed.manifest;
  const image = await selfContainedImage(path, `box ${name} (${arch}): its system disk ${path}`, 'boxUnavailable');
  const base: DiskLayer = { path, format: image.format };
  if (snapshot) {
    const overlay = join(runDir, 'system-overlay.qcow2');
    // A saved state's disk is copied: the run's disk is then the same two layers, booted or restored.
    const prepare = (saved?: string) => (saved ? copyFile(saved, overlay) : createOverlay(overlay, { path, ...image }));
    return { disk: { path: overlay, format: 'qcow2', backing: base, cache: 'unsafe' }, overlay, prepare, release: nothing };
  }
  const lock = await tryLock(`${path}.lock`);
  if ('heldBy' in lock) {
    throw new BoxbuildError('vmFailed', `box ${name} (${arch}) is in use by another --no-snapshot run (pid ${lock.heldBy})`);
  }
  return { disk: { ...base, cache: 'writeback' }, prepare: nothing, release: lock.release };
}
