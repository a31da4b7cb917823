import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type InstalledBox } from '../box/cache.js';
import { type BoxEntry } from '../box/registry.js';
import { NETDEV_ID, type VmSpec, hotplugPort } from '../qemu/argv.js';
import { type RunningVm, describeExit, launchVm, vmError } from '../qemu/launcher.js';
import { QmpClient, VmNotResumed, forwardHostPort, plugDevice, restoreVmState } from '../qemu/qmp.js';
import { listenOnce } from '../qemu/sockets.js';
import { cpuTimeMs } from '../util/proc.js';
import { formatBytes } from '../util/size.js';
import { type MachineProfile } from '../qemu/profiles.js';
import { GuestChannel } from './channel.js';
import { abortable, deadline } from './deadline.js';
import { prepareSsh } from './ssh-channel.js';
import { attachSystemDisk } from './system-disk.js';
import { copySparse, dropState, saveState, savedState, stateDisk, stateFile, stateRam, vmShape, warmBlocker } from './warm.js';
import { type GuestCommand, type RunOptions, type Session, baseVmSpec, kernelCmdline, prepareRun, sharingLost } from './session.js';

/* Starting the guest of a boxbuild-protocol run: booted, or restored from a saved state (warm start). */

export interface GuestStart {
  options: RunOptions;
  session: Session;
  box: BoxEntry;
  installed: InstalledBox;
  command: GuestCommand;
  profile: MachineProfile;
  /** Aborts when the run must end (--timeout, Ctrl-C, SIGTERM); its reason is the run's error. */
  signal: AbortSignal;
  /** false after a restore failed: boot, and save the state anew (it replaces the one that failed). */
  restore?: boolean;
}

/**
 * How much CPU time QEMU may use restoring a state before the restore counts as stuck: CPU time,
 * not wall time, so that a loaded host (several restores at once) only makes it slower.
 */
const RESTORE_CPU_MS = 10_000;

/** Sets up the run (directory, sharing, channel, disks) and describes its VM; QEMU is not started yet. */
async function prepareVm({ options, session, box, installed, command, profile, signal }: GuestStart): Promise<VmSpec> {
  const kernel = join(installed.dir, installed.manifest.files.kernel.name);
  const { runDir, accel, sharing } = await prepareRun(options, session, { kernel, shares: command.shares, profile, signal });
  session.provenance = { installed, accelerator: accel, sharing };
  session.channel = await GuestChannel.listen(runDir);
  session.qmp = await listenOnce(join(runDir, 'qmp.sock'));
  const system = await attachSystemDisk(installed, runDir, options.snapshot ?? true);
  session.releaseDisk = system.release;
  session.overlay = system.overlay;
  session.prepareDisk = system.prepare;
  if (options.channel === 'ssh') session.ssh = await prepareSsh(runDir);
  const base = baseVmSpec(options, box, installed, { profile, accel, kernel, runDir });
  return {
    ...base,
    cmdline: kernelCmdline(box, profile.arch, base, options.boxDebug),
    ports: [...session.channel.ports, ...session.sharing!.ports],
    sharedMemory: session.sharing!.sharedMemory,
    disks: [...(system.disk ? [system.disk] : []), ...(options.extraDisks ?? [])],
    qmpSocket: session.qmp.path,
    extraArgs: session.sharing!.qemuArgs,
  };
}

/** Waits for the agent's READY; a VM that stops or stays silent for too long is an error. */
async function agentReady(start: GuestStart, vm: RunningVm, limitMs: number, silence: string): Promise<void> {
  const vmGone = vm.exited.then((exit) => {
    throw vmError('vmFailed', `the VM stopped before the guest agent was ready (${describeExit(exit)})`, vm);
  });
  vmGone.catch(() => {});
  const limit = deadline(limitMs, () => vmError('vmFailed', silence, vm));
  try {
    await abortable(Promise.race([start.session.channel!.next('ready'), vmGone, limit.promise, sharingLost(start.session.sharing!, vm)]), start.signal);
  } finally {
    limit.clear();
  }
}

/**
 * How a restore ended: the agent answered; QEMU exited (it refused the state); or QEMU used
 * RESTORE_CPU_MS of CPU time, or --boot-timeout passed, without an answer.
 */
async function restored(start: GuestStart, vm: RunningVm, stateSent: Promise<void>): Promise<'ready' | 'refused' | 'stuck'> {
  const done = new AbortController();
  const signal = AbortSignal.any([start.signal, done.signal]);
  const began = Date.now();
  const stuck = async () => {
    while (cpuTimeMs(vm.pid) < RESTORE_CPU_MS && Date.now() - began < start.options.bootTimeoutMs) await sleep(200, undefined, { signal });
    return 'stuck' as const;
  };
  try {
    return await abortable(
      Promise.race([
        start.session.channel!.next('ready').then(() => 'ready' as const),
        vm.exited.then(() => 'refused' as const),
        stateSent.then(() => new Promise<never>(() => {}), () => 'refused' as const),
        stuck(),
      ]),
      start.signal,
    );
  } finally {
    done.abort();
  }
}

/**
 * Starts the guest and waits for its agent: restores the saved state of this VM shape when there is
 * one (unless --cold), else boots and saves the state for the next runs (before anything is mounted).
 * A state that cannot be restored never fails the build: the guest boots cold.
 */
export async function startGuest(start: GuestStart): Promise<{ vm: RunningVm; warm: boolean }> {
  const { options, session, installed, profile, signal } = start;
  const prepared = await prepareVm(start);
  const runDir = session.runDir!;
  const blocker = options.cold ? '--cold' : options.boxDebug ? '--box-debug shows the boot' : warmBlocker(options.snapshot ?? true);
  if (blocker && options.verbose) options.notice(`cold boot: ${blocker}`);
  // Devices a saved state cannot hold (virtiofs) are plugged in once the guest runs, booted or restored.
  const pluggable = blocker ? [] : (session.sharing!.pluggable ?? []);
  const spec: VmSpec = pluggable.length ? { ...prepared, extraArgs: [], hotplugSlots: pluggable.length } : prepared;
  const launch = async (vm: Pick<VmSpec, 'incoming' | 'ramFile'>, stateFd?: number) => {
    signal.throwIfAborted();
    session.vm = await launchVm({ ...spec, ...vm }, { runDir, stateFd, consoleEcho: options.boxDebug ? options.stderr : undefined });
    if (options.verbose) options.notice(`timing: QEMU started ${process.uptime().toFixed(2)} s after boxbuild started`);
    return session.vm;
  };
  // QEMU's monitor, one client for the run: restoring, saving, plugging devices, forwarding the SSH port.
  let client: Promise<QmpClient> | undefined;
  const qmp = () => (client ??= session.qmp!.connection.then((socket) => new QmpClient(socket)));
  // The SSH channel's port is the run's own, forwarded once the guest runs (booted or restored).
  const started = async (vm: RunningVm, warm: boolean) => {
    if (session.ssh || pluggable.length) {
      const monitor = await abortable(qmp(), signal);
      if (session.ssh) await forwardHostPort(monitor, NETDEV_ID, session.ssh.port, 22);
      for (const [index, device] of pluggable.entries()) await plugDevice(monitor, device, profile.hotplugPorts ? hotplugPort(index) : undefined);
    }
    return { vm, warm };
  };
  const state = blocker ? undefined : await savedState(options.cacheRoot, vmShape(spec, runDir, start.command.shares, installed));
  if (state?.dir && start.restore !== false) {
    const dir = state.dir;
    // The disk as the saved guest knew it: the saved overlay, copied, is this run's overlay.
    await session.prepareDisk!(stateDisk(dir));
    if (options.verbose) options.notice(`restoring the saved VM ${dir}`);
    // Mapped copy-on-write; a vhost-user daemon maps the guest's RAM too, so it gets a shared copy then.
    let ramFile = { path: stateRam(dir), shared: false };
    if (spec.sharedMemory) {
      ramFile = { path: join(runDir, 'ram'), shared: true };
      await copySparse(stateRam(dir), ramFile.path);
    }
    const saved = await open(stateFile(dir), 'r');
    const vm = await launch({ incoming: true, ramFile }, saved.fd).finally(() => saved.close());
    const stateSent = qmp().then(restoreVmState);
    // Sent once QEMU connects the port; a QEMU that never gets that far is a stuck restore (restored()).
    void session.channel!.send('PING\n');
    const outcome = await restored(start, vm, stateSent);
    if (outcome === 'ready') return started(vm, true);
    if (outcome === 'stuck') {
      options.notice(`the restored guest did not answer (QEMU used ${RESTORE_CPU_MS / 1000} s of CPU time, or --boot-timeout passed); booting cold and saving the state anew`);
    } else {
      // Only a state QEMU itself refused (its format, a truncated file) is dropped; a slow one is kept.
      const refusal = await Promise.race([stateSent.then(() => '', (error: Error) => `${error.message}; `), vm.exited.then(() => '')]);
      const exit = await vm.stop(); // QEMU has exited already, unless it refused a command
      const tail = vm.console.tail(5);
      options.notice(`the saved VM state could not be restored (${refusal}${describeExit(exit)}); booting cold and saving it again${tail ? `; last console lines:\n${tail}` : ''}`);
      await dropState(state);
    }
    throw new RestoreFailed();
  }
  await session.prepareDisk!();
  // A VM whose state will be saved keeps its RAM in a file, which the state gets a copy of.
  const ram = state && join(runDir, 'ram');
  const vm = await launch({ ramFile: ram ? { path: ram, shared: true } : undefined });
  await agentReady(start, vm, options.bootTimeoutMs, `the guest showed no sign of life within --boot-timeout ${options.bootTimeoutMs / 1000} s`);
  if (state) {
    if (options.verbose) options.notice('saving the booted VM for warm starts');
    const monitor = await abortable(qmp(), signal);
    const about = { box: installed.manifest.name, boxDir: installed.dir, arch: installed.manifest.arch, memoryMiB: spec.memoryMiB, ram: ram!, disk: session.overlay };
    await saveState(monitor, state, about, { runDir, signal }).then(
      (size) => options.verbose && options.notice(`saved the booted VM (${formatBytes(size)}) for warm starts`),
      (error: Error) => {
        signal.throwIfAborted();
        if (error instanceof VmNotResumed) throw error;
        options.notice(`warning: could not save the VM state for warm starts: ${error.message}`);
      },
    );
  }
  return started(vm, false);
}

/** A saved state that did not restore: the run starts over with a cold boot. */
export class RestoreFailed extends Error {}
