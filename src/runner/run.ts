import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { type Arch, hostArch } from '../box/arch.js';
import { type InstalledBox } from '../box/cache.js';
import { type ProvenanceInfo, writeProvenance } from '../box/provenance.js';
import { type BoxEntry, findBox, loadRegistry } from '../box/registry.js';
import { type BoxRequest, ensureBox } from '../box/resolve.js';
import { BoxbuildError, ExitCode, usageError } from '../errors.js';
import { type AccelRequest, resolveAccel } from '../qemu/accel.js';
import { type DiskSpec, type VmSpec, consoleName } from '../qemu/argv.js';
import { type RunningVm, describeExit, launchVm, vmError } from '../qemu/launcher.js';
import { QmpClient } from '../qemu/qmp.js';
import { type SocketEndpoint, listenOnce } from '../qemu/sockets.js';
import { formatBytes } from '../util/size.js';
import { type Accel, type MachineProfile, PROFILES } from '../qemu/profiles.js';
import { type ActiveSharing, type Share, type SharingChoice, type SharingName, chooseSharing, sharingBackend } from '../sharing/index.js';
import { GuestChannel } from './channel.js';
import { deadline, whenAborted } from './deadline.js';
import { encodeCommand, encodeRequest, encodeSshdRequest } from './protocol.js';
import { type SshSetup, prepareSsh, startSshSession } from './ssh-channel.js';
import { attachSystemDisk, createOverlay } from './system-disk.js';
import { dropState, saveState, savedState, stateDisk, stateFile, vmShape, warmBlocker } from './warm.js';

export interface RunOptions {
  box: string;
  arch?: Arch;
  /** Extra registry files (later ones override earlier ones and the bundled boxes.json). */
  registryFiles?: string[];
  cacheRoot: string;
  accel: AccelRequest;
  memoryMiB?: number;
  cpus?: number;
  /** QEMU machine type and CPU model instead of the architecture's defaults (--machine, --cpu). */
  machine?: string;
  cpu?: string;
  /** The kernel console instead of the box's (--box-console): hvc0, or anything else for the machine's serial port. */
  console?: string;
  /** How directories are shared; `auto` picks virtiofs when usable, else 9p. */
  sharing: SharingChoice;
  /** The virtiofsd to use for virtiofs sharing. */
  virtiofsd?: string;
  bootTimeoutMs: number;
  /** Limit for the whole run, from the VM's start; on expiry the VM is killed. */
  timeoutMs?: number;
  /** Echo the guest console to stderr. */
  boxDebug?: boolean;
  /** Print how long each phase took (notices starting with "timing:"). */
  verbose?: boolean;
  stdout: Writable;
  stderr: Writable;
  notice: (line: string) => void;
  /** How the box is fetched: whether a cached box's server is asked for a new version; where progress bars go. */
  boxFetch?: Pick<BoxRequest, 'updateCheck' | 'progress'>;
  /** Boot a system box on a throwaway overlay (default); false writes to the cached disk (--no-snapshot). */
  snapshot?: boolean;
  /** Boot even when a saved state of this VM shape exists (and save none). */
  cold?: boolean;
  /** How the command and its output travel: virtio-serial ports (default), or SSH (the box needs sshd). */
  channel?: 'serial' | 'ssh';
  /** More disks (box making attaches the disk it prepares). */
  extraDisks?: DiskSpec[];
  signal?: AbortSignal;
}

/** What to run in the guest. */
export interface GuestCommand {
  shares: Share[];
  /** A build's target directory (host path): its provenance file is written there. */
  targetDir?: string;
  argv: string[];
  cwd: string;
  env?: Record<string, string>;
}

/** How long a guest that reported its result may take to power off before it is stopped. */
const POWEROFF_GRACE_MS = 10_000;

export function kernelCmdline(box: BoxEntry, arch: Arch, spec: Pick<VmSpec, 'profile' | 'console'>): string {
  return [`console=${consoleName(spec)}`, 'panic=-1', box.cmdline, box.arches[arch]?.cmdline ?? ''].filter(Boolean).join(' ');
}

/** Where the kernel console goes: --box-console, else the box's console. */
export const consoleDevice = (options: Pick<RunOptions, 'console'>, box: BoxEntry): VmSpec['console'] =>
  (options.console ?? box.console) === 'hvc0' ? 'hvc0' : 'serial';

/** What a run has started so far; `teardown` stops and removes all of it. */
export interface Session {
  runDir?: string;
  sharing?: ActiveSharing;
  vm?: RunningVm;
  channel?: GuestChannel;
  releaseDisk?: () => Promise<void>;
  ssh?: SshSetup;
  /** What the run ran on, for the build's provenance file. */
  provenance?: ProvenanceInfo;
  /** QEMU's monitor (QMP), used to save the booted VM. */
  qmp?: SocketEndpoint;
  /** The system disk's throwaway overlay. */
  overlay?: string;
}

export async function teardown(session: Session): Promise<void> {
  if (session.vm) await session.vm.stop();
  await session.channel?.drained();
  await session.sharing?.stop();
  await session.releaseDisk?.();
  session.qmp?.close();
  if (session.runDir) await rm(session.runDir, { recursive: true, force: true });
}

/** A run's private directory, accelerator and sharing backend, set up before QEMU starts. */
export interface PreparedRun {
  runDir: string;
  accel: Accel;
  sharing: SharingName;
}

/** Creates the run's private directory, chooses the accelerator and starts sharing `shares` (kept in the session). */
export async function prepareRun(
  options: RunOptions,
  session: Session,
  what: { kernel: string; shares: Share[]; profile: MachineProfile },
): Promise<PreparedRun> {
  const { kernel, shares, profile } = what;
  const runDir = (session.runDir = await mkdtemp(join(tmpdir(), 'boxbuild-')));
  const accel = await resolveAccel(options.accel, {
    profile,
    hostArch: hostArch(),
    kernel,
    cacheRoot: options.cacheRoot,
    notice: options.notice,
  });
  const sharing = await chooseSharing(options.sharing, { virtiofsd: options.virtiofsd });
  if (options.sharing === 'auto') options.notice(`sharing: ${sharing.name} (auto: ${sharing.why})`);
  session.sharing = await sharingBackend(sharing.name, { virtiofsd: options.virtiofsd }).start(shares, { runDir, profile });
  return { runDir, accel, sharing: sharing.name };
}

/** --timeout: rejects when the whole run takes too long (the caller then tears the VM down). */
export const runTimeout = (options: Pick<RunOptions, 'timeoutMs'>) =>
  deadline(options.timeoutMs, () => new BoxbuildError('timeout', `the build did not finish within --timeout ${options.timeoutMs! / 1000} s; the VM was killed`));

/** The box entry a run asks for, and the architecture. */
export function lookupBox(options: Pick<RunOptions, 'box' | 'arch' | 'registryFiles'>): { box: BoxEntry; arch: Arch } {
  const arch = options.arch ?? hostArch();
  return { box: findBox(loadRegistry(options.registryFiles), options.box, arch).box, arch };
}

/** The installed box, made or downloaded first when needed; gives up when the run is aborted. */
export function fetchBox(options: RunOptions, box: BoxEntry, arch: Arch): Promise<InstalledBox> {
  const request = { cacheRoot: options.cacheRoot, box, arch, log: options.notice, signal: options.signal, ...options.boxFetch };
  return Promise.race([ensureBox(request), whenAborted(options.signal)]);
}

/** What every VM of a run has, whatever the guest protocol: machine, memory, kernel, console. */
export function baseVmSpec(
  options: RunOptions,
  box: BoxEntry,
  installed: InstalledBox,
  run: { profile: MachineProfile; accel: Accel; kernel: string; runDir: string },
): Omit<VmSpec, 'cmdline' | 'ports'> {
  return {
    profile: run.profile,
    accel: run.accel,
    machine: options.machine,
    cpu: options.cpu,
    memoryMiB: options.memoryMiB ?? box.memoryMiB,
    cpus: options.cpus ?? box.cpus,
    kernel: run.kernel,
    initrd: join(installed.dir, installed.manifest.files.initrd.name),
    console: consoleDevice(options, box),
    consoleSocket: join(run.runDir, 'console.sock'),
  };
}

interface GuestStart {
  options: RunOptions;
  session: Session;
  box: BoxEntry;
  installed: InstalledBox;
  command: GuestCommand;
  profile: MachineProfile;
  /** Rejects when the run must end: --timeout, Ctrl-C, SIGTERM. */
  ending: Promise<never>;
}

/** How long a restored guest may take to answer before its state counts as unusable. */
const RESTORE_DEADLINE_MS = 10_000;

/** Sets up the run (directory, sharing, channel, disks) and describes its VM; QEMU is not started yet. */
async function prepareVm({ options, session, box, installed, command, profile }: GuestStart): Promise<VmSpec> {
  const kernel = join(installed.dir, installed.manifest.files.kernel.name);
  const { runDir, accel, sharing } = await prepareRun(options, session, { kernel, shares: command.shares, profile });
  session.provenance = { installed, accelerator: accel, sharing };
  session.channel = await GuestChannel.listen(runDir);
  session.qmp = await listenOnce(join(runDir, 'qmp.sock'));
  const system = await attachSystemDisk(installed, runDir, options.snapshot ?? true);
  session.releaseDisk = system.release;
  session.overlay = system.overlay;
  if (options.channel === 'ssh') session.ssh = await prepareSsh(runDir);
  const base = baseVmSpec(options, box, installed, { profile, accel, kernel, runDir });
  return {
    ...base,
    cmdline: kernelCmdline(box, profile.arch, base),
    ports: [...session.channel.ports, ...session.sharing!.ports],
    sharedMemory: session.sharing!.sharedMemory,
    disks: [...(system.disk ? [system.disk] : []), ...(options.extraDisks ?? [])],
    network: session.ssh?.network,
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
    await Promise.race([start.session.channel!.next('ready'), vmGone, limit.promise, start.ending]);
  } finally {
    limit.clear();
  }
}

/**
 * Starts the guest and waits for its agent: restores the saved state of this VM shape when there is
 * one (unless --cold), else boots and saves the state for the next runs (before anything is mounted).
 * A state that cannot be restored never fails the build: it is dropped and the guest boots cold.
 */
async function startGuest(start: GuestStart): Promise<{ vm: RunningVm; warm: boolean }> {
  const { options, session, installed } = start;
  const spec = await prepareVm(start);
  const runDir = session.runDir!;
  const launch = (incoming?: string) =>
    launchVm({ ...spec, incoming }, { runDir, consoleEcho: options.boxDebug ? options.stderr : undefined }).then((vm) => (session.vm = vm));
  const blocker = options.cold ? '--cold' : warmBlocker(spec, session.provenance!.sharing, options.snapshot ?? true);
  const state = blocker ? undefined : await savedState(options.cacheRoot, vmShape(spec, runDir, start.command.shares, installed));
  if (blocker && options.verbose) options.notice(`cold boot: ${blocker}`);
  if (state?.dir) {
    // The disk as the saved guest knew it: the saved overlay becomes the backing of this run's overlay.
    if (session.overlay) await createOverlay(session.overlay, stateDisk(state.dir));
    const vm = await launch(stateFile(state.dir));
    try {
      await start.session.channel!.send('PING\n');
      await agentReady(start, vm, RESTORE_DEADLINE_MS, `the restored guest did not answer within ${RESTORE_DEADLINE_MS / 1000} s`);
      return { vm, warm: true };
    } catch (error) {
      if (!(error instanceof BoxbuildError) || error.exitCode !== ExitCode.vmFailed) throw error;
      options.notice(`the saved VM state could not be restored (${error.message}); booting cold and saving it again`);
      await dropState(state);
      throw new RestoreFailed();
    }
  }
  const vm = await launch();
  await agentReady(start, vm, options.bootTimeoutMs, `the guest showed no sign of life within --boot-timeout ${options.bootTimeoutMs / 1000} s`);
  if (state) {
    const qmp = new QmpClient(await session.qmp!.connection);
    const about = { box: installed.manifest.name, boxDir: installed.dir, arch: installed.manifest.arch, memoryMiB: spec.memoryMiB, disk: session.overlay };
    await saveState(qmp, state, about).then(
      (size) => options.verbose && options.notice(`saved the booted VM (${formatBytes(size)}) for warm starts`),
      (error: Error) => options.notice(`warning: could not save the VM state for warm starts: ${error.message}`),
    );
  }
  return { vm, warm: false };
}

/** A saved state that did not restore: the run starts over with a cold boot. */
class RestoreFailed extends Error {}

/**
 * Boots a fresh VM of the box, mounts the shares, runs the command with its output streamed,
 * and returns the command's exit status. Everything is torn down on every path.
 */
export async function runInBox(options: RunOptions, makeCommand: (box: BoxEntry) => GuestCommand): Promise<number> {
  const { box, arch } = lookupBox(options);
  if (box.protocol !== 'boxbuild') throw usageError(`box "${box.name}" follows the KIWI box contract: it runs kiwi builds (boxbuild --box ${box.name} -- --description D --target-dir T), not commands`);
  const command = makeCommand(box);
  const aborted = whenAborted(options.signal);
  const installed = await fetchBox(options, box, arch);
  let session: Session = {};
  const overall = runTimeout(options);
  const ending = Promise.race([overall.promise, aborted]);
  ending.catch(() => {});
  try {
    const start = { options, box, installed, command, profile: PROFILES[arch], ending };
    const vmStarted = Date.now();
    let started: { vm: RunningVm; warm: boolean };
    try {
      started = await Promise.race([startGuest({ ...start, session }), ending]);
    } catch (error) {
      if (!(error instanceof RestoreFailed)) throw error;
      await teardown(session);
      session = {};
      started = await Promise.race([startGuest({ ...start, session }), ending]);
    }
    const { vm } = started;
    const timing = (what: string) => options.verbose && options.notice(`timing: ${what} ${((Date.now() - vmStarted) / 1000).toFixed(2)} s after QEMU started`);
    const channel = session.channel!;
    timing(started.warm ? 'guest agent ready (restored)' : 'guest agent ready');
    const lost = vm.exited.then((exit) => {
      throw vmError('guestLost', `the guest stopped without reporting the build's exit status (${describeExit(exit)})`, vm);
    });
    lost.catch(() => {});
    const guestRequest = { mounts: session.sharing!.mounts, cwd: command.cwd, env: command.env ?? {}, argv: command.argv };
    let sshSession: Promise<unknown> | undefined;
    let sshGone: Promise<never> = new Promise(() => {});
    if (session.ssh) {
      // SSH channel: mounts and sshd over the control port, the command over SSH, the status back on the control port.
      await channel.send(encodeSshdRequest(guestRequest.mounts, session.ssh.authorizedKey));
      const hello = await Promise.race([channel.next('hostkey', 'error'), lost, overall.promise, aborted]);
      if (hello.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${hello.message}`);
      const { ended } = await startSshSession(session.ssh, session.runDir!, hello.key, encodeCommand(guestRequest), options);
      sshSession = ended;
      sshGone = ended.then(async (done) => {
        await new Promise((resolve) => setTimeout(resolve, 5000).unref()); // the status may still be on its way
        throw new BoxbuildError('vmFailed', `the SSH session to the guest ended without a result (ssh exited with ${done.exitCode})`);
      });
      sshGone.catch(() => {});
    } else {
      channel.pipeOutput(options.stdout, options.stderr);
      await channel.send(encodeRequest(guestRequest, started.warm));
    }
    const result = await Promise.race([channel.next('exit', 'error'), lost, sshGone, overall.promise, aborted]);
    if (result.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${result.message}`);
    await sshSession; // every byte of the session's output has been passed on
    timing('command finished');

    // The guest powers off after reporting; its last output arrives before QEMU closes the sockets.
    const poweroff = deadline(POWEROFF_GRACE_MS, () => new Error('poweroff timeout'));
    await Promise.race([vm.exited, poweroff.promise]).catch(() => vm.stop());
    poweroff.clear();
    await channel.drained();
    timing('VM stopped');
    if (command.targetDir) await writeProvenance(command.targetDir, session.provenance!);
    return result.status;
  } finally {
    overall.clear();
    await teardown(session);
  }
}
