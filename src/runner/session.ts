import { mkdtemp, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { type Arch, hostArch } from '../box/arch.js';
import { type InstalledBox } from '../box/cache.js';
import { type ProvenanceInfo } from '../box/provenance.js';
import { type BoxEntry, findBox, loadRegistry } from '../box/registry.js';
import { type BoxRequest, ensureBox } from '../box/resolve.js';
import { BoxbuildError } from '../errors.js';
import { type AccelRequest, resolveAccel } from '../qemu/accel.js';
import { type DiskSpec, type VmSpec, consoleName } from '../qemu/argv.js';
import { type RunningVm } from '../qemu/launcher.js';
import { type SocketEndpoint } from '../qemu/sockets.js';
import { type Accel, type MachineProfile } from '../qemu/profiles.js';
import { egressSocket } from '../qemu/egress-link.js';
import { type EgressProxy, startEgressProxy } from '../network/egress.js';
import { type NetworkChoice, networkWords } from '../network/mode.js';
import { type PackageCache } from '../package-cache/cache.js';
import { type ActiveSharing, type Share, type SharingChoice, type SharingName, chooseSharing, sharingBackend } from '../sharing/index.js';
import { GuestChannel } from './channel.js';
import { runEnding, whenAborted } from './deadline.js';
import { networkOf } from './network.js';
import { type SshSetup } from './ssh-channel.js';
import { type HostTerminal } from './terminal.js';

/*
 * What a run is asked for, and the parts every run shares whatever the guest protocol (boxbuild's
 * agent or the KIWI contract): the session of things started and their teardown, the box, the
 * run's private directory, accelerator and sharing, and the VM's base spec.
 */

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
  /** What the command reads on its stdin (`exec`); without it, /dev/null. */
  stdin?: Readable;
  /**
   * The user's terminal, lent to a terminal in the guest: the command runs on it (`tty`: -t, shell),
   * and/or a shell runs on it after a failed command, in the same VM (`debugShell`: --debug-shell).
   */
  terminal?: { host: HostTerminal; tty: boolean; debugShell: boolean };
  stdout: Writable;
  stderr: Writable;
  notice: (line: string) => void;
  /** How the box is fetched: whether a cached box's server is asked for a new version; where progress bars go. */
  boxFetch?: Pick<BoxRequest, 'updateCheck' | 'progress'>;
  /** Boot a system box on a throwaway overlay (default); false writes to the cached disk (--no-snapshot). */
  snapshot?: boolean;
  /** Boot even when a saved state of this VM shape exists (and save none). */
  cold?: boolean;
  /** What the guest's network reaches (--network); default: the filtered network. */
  network?: NetworkChoice;
  /** How the command and its output travel: virtio-serial ports (default), or SSH (the box needs sshd). */
  channel?: 'serial' | 'ssh';
  /** KIWI builds: packages through the box's package cache (default, with a network); false: downloaded afresh (--no-cache). */
  packageCache?: boolean;
  /** More disks (box making attaches the disk it prepares). */
  extraDisks?: DiskSpec[];
  signal?: AbortSignal;
  /** Told what the run runs on once its VM runs (for a machine-readable result, --result). */
  onStarted?: (about: RunStarted) => void;
}

/** What a run runs on: told once its VM runs. */
export interface RunStarted {
  box: string;
  arch: string;
  version: string;
  accelerator: string;
  sharing: string;
  warm: boolean;
}

/** Tells options.onStarted what the run runs on. */
export function reportStarted(options: Pick<RunOptions, 'onStarted'>, provenance: ProvenanceInfo, warm: boolean): void {
  const { manifest } = provenance.installed;
  options.onStarted?.({ box: manifest.name, arch: manifest.arch, version: manifest.version, accelerator: provenance.accelerator, sharing: provenance.sharing, warm });
}

/** What to run in the guest. */
export interface GuestCommand {
  shares: Share[];
  /** A build's target directory (host path): its provenance file is written there. */
  targetDir?: string;
  argv: string[];
  cwd: string;
  /** Set in the guest over its defaults (PATH, HOME, LANG=C.UTF-8, the host's proxy settings). */
  env?: Record<string, string>;
}

/**
 * The kernel command line of a box. `debug` (--box-debug) takes `quiet` off and asks boxbuild's
 * guest files to trace what they do on the console (boxbuild.debug).
 */
export function kernelCmdline(box: BoxEntry, arch: Arch, spec: Pick<VmSpec, 'profile' | 'console'>, debug = false): string {
  const words = [`console=${consoleName(spec)}`, 'panic=-1', box.cmdline, box.arches[arch]?.cmdline ?? ''].join(' ').split(/\s+/).filter(Boolean);
  return (debug ? [...words.filter((word) => word !== 'quiet'), 'boxbuild.debug'] : words).join(' ');
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
  /** The system disk's throwaway overlay, and how it is created (see attachSystemDisk). */
  overlay?: string;
  prepareDisk?: (saved?: string) => Promise<void>;
  /** The egress proxy (every run with a network). */
  egress?: EgressProxy;
}

export async function teardown(session: Session): Promise<void> {
  if (session.vm) await session.vm.stop();
  await session.channel?.drained();
  await session.sharing?.stop();
  await session.releaseDisk?.();
  session.qmp?.close();
  await session.egress?.close();
  if (session.runDir) await rm(session.runDir, { recursive: true, force: true });
}

/** How long a sharing daemon's end may come before QEMU's and still be QEMU's doing (it closed the daemon's socket). */
const DAEMON_AFTER_QEMU_MS = 2000;

/**
 * Rejects when a sharing daemon stops while the VM still runs: the guest lost a share. A daemon
 * stops on its own once QEMU has ended too; that is the end of the run, not a failure.
 */
export function sharingLost(sharing: ActiveSharing, vm: RunningVm): Promise<never> {
  return sharing.failed.catch(async (error: unknown) => {
    const vmEnded = await Promise.race([vm.exited.then(() => true), sleep(DAEMON_AFTER_QEMU_MS, false, { ref: false })]);
    if (!vmEnded) throw error;
    return new Promise<never>(() => {});
  });
}

/** A run's private directory, accelerator and sharing backend, set up before QEMU starts. */
export interface PreparedRun {
  runDir: string;
  accel: Accel;
  sharing: SharingName;
}

/**
 * Creates the run's private directory, starts its egress proxy (with the package cache of a KIWI
 * build), chooses the accelerator and starts sharing `shares` (all kept in the session); stops
 * between the steps when `signal` aborted.
 */
export async function prepareRun(
  options: RunOptions,
  session: Session,
  what: { kernel: string; shares: Share[]; profile: MachineProfile; signal: AbortSignal; packageCache?: PackageCache },
): Promise<PreparedRun> {
  const { kernel, shares, profile, signal } = what;
  signal.throwIfAborted();
  const runDir = (session.runDir = await mkdtemp(join(tmpdir(), 'boxbuild-')));
  const network = networkOf(options);
  if (network.mode !== 'none') {
    if (options.verbose) options.notice(`network: ${networkWords(network)}`);
    session.egress = await startEgressProxy({
      listen: { socket: egressSocket(runDir) },
      mode: network.mode,
      allow: network.allow,
      cache: what.packageCache,
      onRefused: options.verbose ? options.notice : undefined,
    });
  }
  signal.throwIfAborted();
  const accel = await resolveAccel(options.accel, {
    profile,
    hostArch: hostArch(),
    kernel,
    cacheRoot: options.cacheRoot,
    notice: options.notice,
  });
  if (options.verbose && process.getuid?.() === 0) {
    options.notice('QEMU runs as root, as boxbuild does, so that the files the build writes are yours; the seccomp share filter and -sandbox confine it');
  }
  const sharing = await chooseSharing(options.sharing, { virtiofsd: options.virtiofsd });
  if (options.sharing === 'auto') options.notice(`sharing: ${sharing.name} (auto: ${sharing.why})`);
  signal.throwIfAborted();
  session.sharing = await sharingBackend(sharing.name, { virtiofsd: options.virtiofsd }).start(shares, { runDir, profile });
  signal.throwIfAborted();
  return { runDir, accel, sharing: sharing.name };
}

/**
 * The run's signal: aborts on Ctrl-C, SIGTERM, --timeout, and Enter ~ . on a lent terminal (the
 * terminal is raw then: Ctrl-C is the guest's); the caller then tears the VM down.
 */
export function runSignal(options: Pick<RunOptions, 'signal' | 'timeoutMs'>): ReturnType<typeof runEnding> & { escape: () => void } {
  const escape = new AbortController();
  const interrupt = AbortSignal.any([escape.signal, ...(options.signal ? [options.signal] : [])]);
  const ending = runEnding(interrupt, options.timeoutMs, () => new BoxbuildError('timeout', `the build did not finish within --timeout ${options.timeoutMs! / 1000} s; the VM was killed`));
  return { ...ending, escape: () => escape.abort('SIGINT') };
}

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
    network: vmNetwork(options),
  };
}

/** The VM's network device for the run's network (none: no device). */
export function vmNetwork(options: Pick<RunOptions, 'network'>): VmSpec['network'] {
  const { mode } = networkOf(options);
  return mode === 'none' ? undefined : mode;
}
