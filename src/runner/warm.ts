import { createHash } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { InstalledBox } from '../box/cache.js';
import { type VmSpec, buildQemuArgs } from '../qemu/argv.js';
import { type QmpClient, saveVmState } from '../qemu/qmp.js';
import type { Share, SharingName } from '../sharing/types.js';

/** Where saved VM states live: `<cache>/states/<shape>.state`, beside a small `.json` description. */
export const statesDir = (cacheRoot: string) => join(cacheRoot, 'states');

const identities = new Map<string, string>();

/** The QEMU binary as found on PATH, with its size and mtime: another QEMU build means another shape. */
function qemuIdentity(binary: string): string {
  const known = identities.get(binary);
  if (known) return known;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      const path = join(dir, binary);
      accessSync(path, constants.X_OK);
      const { size, mtimeMs } = statSync(path);
      const identity = `${path} ${size} ${mtimeMs}`;
      identities.set(binary, identity);
      return identity;
    } catch {
      // not in this directory
    }
  }
  return binary;
}

/**
 * The shape of a VM: everything a saved state depends on. It is QEMU's own argv with the run's
 * private paths and the shares' host paths taken out (they may differ between runs: the same
 * mount tags restore fine behind other host directories), plus the QEMU build and the box files.
 */
export function vmShape(spec: VmSpec, runDir: string, shares: Share[], installed: InstalledBox): string {
  let argv = JSON.stringify(buildQemuArgs({ ...spec, incoming: undefined }));
  argv = argv.replaceAll(runDir, '<run>');
  for (const share of shares) argv = argv.replaceAll(`path=${share.hostPath.replaceAll(',', ',,')}`, `path=<share ${share.tag}>`);
  const files = Object.values(installed.manifest.files).map((file) => file?.sha256);
  return createHash('sha256').update(JSON.stringify({ qemu: qemuIdentity(spec.profile.qemuBinary), argv, files })).digest('hex').slice(0, 32);
}

/** Why a VM of this kind is booted cold every time; undefined when its state can be saved and restored. */
export function warmBlocker(spec: VmSpec, sharing: SharingName | string): string | undefined {
  if (sharing === 'virtiofs') return 'virtiofs devices (vhost-user-fs) cannot be migrated by QEMU 7.2';
  if (spec.network) return 'the SSH channel needs a network set up per run';
  if (spec.disks?.length) return 'system disks are not saved with the VM state yet';
  return undefined;
}

export interface SavedState {
  path: string;
  exists: boolean;
}

export async function savedState(cacheRoot: string, shape: string): Promise<SavedState> {
  const path = join(statesDir(cacheRoot), `${shape}.state`);
  const exists = await stat(path).then((s) => s.isFile() && s.size > 0, () => false);
  return { path, exists };
}

/**
 * Saves the VM (booted, agent ready, nothing mounted yet) as the state of its shape: written to a
 * temporary file and renamed into place, so concurrent runs only ever see whole states.
 */
export async function saveState(qmp: QmpClient, state: SavedState, about: { box: string; arch: string; memoryMiB: number }): Promise<number> {
  await mkdir(join(state.path, '..'), { recursive: true });
  const partial = `${state.path}.${process.pid}.partial`;
  try {
    await saveVmState(qmp, partial);
    const { size } = await stat(partial);
    await writeFile(state.path.replace(/\.state$/, '.json'), `${JSON.stringify({ ...about, size, savedAt: new Date().toISOString() })}\n`);
    await rename(partial, state.path);
    return size;
  } finally {
    await rm(partial, { force: true });
  }
}

/** Drops a state that failed to restore (another run may have replaced it meanwhile: harmless). */
export async function dropState(state: SavedState): Promise<void> {
  await rm(state.path, { force: true });
}
