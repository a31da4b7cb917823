import { createHash } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readlink, rename, rm, rmdir, stat, symlink } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { InstalledBox } from '../../box/cache.js';
import { BoxbuildError } from '../../errors.js';
import { writeJsonFile } from '../../box/json-file.js';
import { PRIVATE_DIR, PRIVATE_FILE } from '../../box/modes.js';
import { statesCapBytes, statesDir, tidyStates } from '../../box/states.js';
import { type VmSpec, buildQemuArgs } from '../../qemu/argv.js';
import { describeExit } from '../../qemu/launcher.js';
import { type QmpClient, VmNotResumed, restoreVmState, saveVmState } from '../../qemu/qmp.js';
import type { Share } from '../../sharing/types.js';
import { race, untilAborted, waitFor } from '../../util/abort.js';
import { lastWords, runChild } from '../../util/child.js';
import { cpuTimeMs } from '../../util/proc.js';
import { formatBytes } from '../../util/size.js';
import type { DriverContext, Restored, WarmStart } from '../types.js';
import type { Machine } from './machine.js';

/*
 * Warm start, all of it: a VM's shape, its saved states on disk, saving a booted VM and restoring
 * one (QEMU's migration stream for the devices, the guest's RAM in a file mapped copy-on-write).
 *
 * Saved VM states live in `<cache>/states`: for each VM shape a link `<shape>` to the directory of
 * its newest state, `<shape>.d/<id>/`, which holds the guest's RAM (`ram`, a sparse file that a
 * restored VM maps copy-on-write), its devices (`vm.state`, QEMU's migration stream without the
 * RAM), the system disk's overlay as it was (`disk.qcow2`, system boxes) and `state.json`. The link
 * is switched atomically, so concurrent runs only ever see a whole state; each run reads the
 * directory the link named when it started.
 */

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
 * What a state directory holds and how a run uses it; states of another layout are never restored
 * (their shape differs). 3: a system disk's saved overlay is copied, not put under the run's; the
 * network goes through the run's egress proxy (states saved by builds in between are not trusted).
 */
const STATE_LAYOUT = 3;

/**
 * The shape of a VM: everything a saved state depends on. It is QEMU's own argv with the run's
 * private paths and the shares' host paths taken out (they may differ between runs: the same
 * mount tags restore fine behind other host directories), plus the QEMU build and the box files.
 */
export function vmShape(spec: VmSpec, runDir: string, shares: Share[], installed: InstalledBox): string {
  let argv = JSON.stringify(buildQemuArgs({ ...spec, incoming: undefined, ramFile: { path: '<ram>', shared: false } }));
  argv = argv.replaceAll(runDir, '<run>');
  for (const share of shares) argv = argv.replaceAll(`path=${share.hostPath.replaceAll(',', ',,')}`, `path=<share ${share.tag}>`);
  const files = Object.values(installed.manifest.files).map((file) => file?.sha256);
  return createHash('sha256').update(JSON.stringify({ layout: STATE_LAYOUT, qemu: qemuIdentity(spec.profile.qemuBinary), argv, files })).digest('hex').slice(0, 32);
}

/** Why a VM of this kind is booted cold every time; undefined when its state can be saved and restored. */
export function warmBlocker(snapshot: boolean): string | undefined {
  return snapshot ? undefined : '--no-snapshot writes to the cached disk, which a saved state could not match';
}

export interface SavedState {
  /** `<cache>/states/<shape>`, the link. */
  link: string;
  /** The state's directory when one is saved. */
  dir?: string;
}

export const stateFile = (dir: string) => join(dir, 'vm.state');
export const stateRam = (dir: string) => join(dir, 'ram');
export const stateDisk = (dir: string) => join(dir, 'disk.qcow2');

export async function savedState(cacheRoot: string, shape: string): Promise<SavedState> {
  const link = join(statesDir(cacheRoot), shape);
  const target = await readlink(link).catch(() => undefined);
  const dir = target && join(statesDir(cacheRoot), target);
  const whole = dir && (await Promise.all([stateFile(dir), stateRam(dir)].map((file) => stat(file).then((s) => s.size > 0, () => false)))).every(Boolean);
  return { link, dir: whole ? dir : undefined };
}

/** Copies a sparse file sparsely: only the pages the guest touched take space. */
export async function copySparse(from: string, to: string): Promise<void> {
  const cp = await runChild('cp', ['--sparse=always', from, to]);
  if (cp.exitCode !== 0) throw new BoxbuildError('vmFailed', `cannot copy the guest's RAM: ${lastWords(cp)}`);
}

/** The disk space a state takes (its RAM file is sparse). */
async function allocatedBytes(files: string[]): Promise<number> {
  const sizes = await Promise.all(files.map((file) => stat(file).then((s) => s.blocks * 512, () => 0)));
  return sizes.reduce((sum, size) => sum + size, 0);
}

/**
 * Saves the VM (booted, agent ready, nothing mounted yet) as the newest state of its shape: its
 * devices, a copy of its RAM file (spec.ramFile, shared) and of its disk overlay when it has one,
 * all taken while it is paused. The states it replaces go, and the oldest of other shapes while
 * all take more than the cap (tidyStates). Returns the state's size on disk.
 */
export async function saveState(
  qmp: QmpClient,
  state: SavedState,
  about: { box: string; boxDir: string; arch: string; memoryMiB: number; ram: string; disk?: string },
  run: { runDir: string; signal: AbortSignal },
): Promise<number> {
  const cap = statesCapBytes();
  const name = `${state.link.slice(state.link.lastIndexOf('/') + 1)}.d/${Date.now().toString(36)}-${process.pid}`;
  const dir = join(state.link, '..', name);
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  try {
    const whilePaused = () => Promise.all([copySparse(about.ram, stateRam(dir)), about.disk && copyFile(about.disk, stateDisk(dir))]).then(() => {});
    await saveVmState(qmp, stateFile(dir), { ...run, whilePaused });
    // The copies took the modes of QEMU's files; the guest's memory is the user's alone.
    await Promise.all([stateRam(dir), ...(about.disk ? [stateDisk(dir)] : [])].map((file) => chmod(file, PRIVATE_FILE)));
    const size = await allocatedBytes([stateFile(dir), stateRam(dir), stateDisk(dir)]);
    await writeJsonFile(join(dir, 'state.json'), { box: about.box, boxDir: about.boxDir, arch: about.arch, memoryMiB: about.memoryMiB, size, savedAt: new Date().toISOString() });
    const link = `${state.link}.${process.pid}.link`;
    await rm(link, { force: true });
    await symlink(name, link);
    await rename(link, state.link);
    await tidyStates(join(state.link, '..', '..'), dir, cap);
    return size;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    await rmdir(join(dir, '..')).catch(() => {}); // its shape's directory, unless other states are in it
    throw error;
  }
}

/** Drops a state that failed to restore (if another run replaced it meanwhile, the link moved on). */
export async function dropState(state: SavedState): Promise<void> {
  if (state.dir) await rm(state.dir, { recursive: true, force: true });
}

/**
 * How much CPU time QEMU may use restoring a state before the restore counts as stuck: CPU time,
 * not wall time, so that a loaded host (several restores at once) only makes it slower.
 */
const RESTORE_CPU_MS = 10_000;

/** What a state is saved with besides the VM: whose it is, and how long a restore may take. */
export interface WarmRun {
  runDir: string;
  installed: InstalledBox;
  bootTimeoutMs: number;
}

/** Warm start of one machine: restore the shape's saved state, or boot and save one. */
export function warmStart(run: WarmRun, machine: Machine, state: SavedState): WarmStart {
  const { runDir, installed } = run;
  const { spec } = machine;
  const ram = join(runDir, 'ram');

  /**
   * How a restore ended: the agent answered; QEMU exited or refused the state; or QEMU used
   * RESTORE_CPU_MS of CPU time, or --boot-timeout passed, without an answer.
   */
  const outcome = (ctx: DriverContext, pid: number | undefined, exited: Promise<unknown>, stateSent: Promise<void>, ready: (signal: AbortSignal) => Promise<void>) => {
    const began = Date.now();
    return race<'ready' | 'refused' | 'stuck'>(ctx.signal, [
      (signal) => ready(signal).then(() => 'ready' as const),
      (signal) => waitFor(exited, signal).then(() => 'refused' as const),
      (signal) => waitFor(stateSent, signal).then(() => untilAborted(signal), () => 'refused' as const),
      async (signal) => {
        while (cpuTimeMs(pid) < RESTORE_CPU_MS && Date.now() - began < run.bootTimeoutMs) await sleep(200, undefined, { signal });
        return 'stuck' as const;
      },
    ]);
  };

  return {
    restorable: state.dir !== undefined,

    async restore(ctx, ready): Promise<Restored> {
      const dir = state.dir;
      if (!dir) return { failed: 'no saved state' };
      // The disk as the saved guest knew it: the saved overlay, copied, is this run's overlay.
      await machine.disk.prepare(stateDisk(dir));
      ctx.detail(`restoring the saved VM ${dir}`);
      // Mapped copy-on-write; a vhost-user daemon maps the guest's RAM too, so it gets a shared copy then.
      let ramFile = { path: stateRam(dir), shared: false };
      if (spec.sharedMemory) {
        ramFile = { path: ram, shared: true };
        await copySparse(stateRam(dir), ramFile.path);
      }
      const saved = await open(stateFile(dir), 'r');
      const { vm, guest } = await machine.launch(ctx, { incoming: true, ramFile }, saved.fd).finally(() => saved.close());
      const stateSent = machine.monitor().then(restoreVmState);
      stateSent.catch(() => {});
      const how = await outcome(ctx, vm.pid, vm.exited, stateSent, ready);
      if (how === 'ready') return { guest };
      if (how === 'stuck') {
        return { failed: `the restored guest did not answer (QEMU used ${RESTORE_CPU_MS / 1000} s of CPU time, or --boot-timeout passed); booting cold and saving the state anew` };
      }
      // Only a state QEMU itself refused (its format, a truncated file) is dropped; a slow one is kept.
      const refusal = await race(ctx.signal, [(signal) => waitFor(stateSent, signal).then(() => '', (error: Error) => `${error.message}; `), (signal) => waitFor(vm.exited, signal).then(() => '')]);
      const exit = await vm.stop(); // QEMU has exited already, unless it refused a command
      const tail = vm.console.tail(5);
      await dropState(state);
      return { failed: `the saved VM state could not be restored (${refusal}${describeExit(exit)}); booting cold and saving it again${tail ? `; last console lines:\n${tail}` : ''}` };
    },

    async boot(ctx) {
      await machine.disk.prepare();
      // A VM whose state will be saved keeps its RAM in a file, which the state gets a copy of.
      return (await machine.launch(ctx, { ramFile: { path: ram, shared: true } })).guest;
    },

    async save(ctx) {
      ctx.detail('saving the booted VM for warm starts');
      const monitor = await waitFor(machine.monitor(), ctx.signal);
      const about = { box: installed.manifest.name, boxDir: installed.dir, arch: installed.manifest.arch, memoryMiB: spec.memoryMiB, ram, disk: machine.disk.overlay };
      await saveState(monitor, state, about, { runDir, signal: ctx.signal }).then(
        (size) => ctx.detail(`saved the booted VM (${formatBytes(size)}) for warm starts`),
        (error: Error) => {
          ctx.signal.throwIfAborted();
          if (error instanceof VmNotResumed) throw error;
          ctx.notice(`warning: could not save the VM state for warm starts: ${error.message}`);
        },
      );
    },
  };
}
