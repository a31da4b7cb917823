import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { type Arch, hostArch } from '../box/arch.js';
import { type InstalledBox } from '../box/cache.js';
import { type BoxEntry, findBox, loadRegistry } from '../box/registry.js';
import { type BoxRequest, ensureBox } from '../box/resolve.js';
import { BoxbuildError } from '../errors.js';
import { type AccelRequest, resolveAccel } from '../qemu/accel.js';
import { type VmSpec, consoleName } from '../qemu/argv.js';
import { type RunningVm, describeExit, launchVm, vmError } from '../qemu/launcher.js';
import { type MachineProfile, PROFILES } from '../qemu/profiles.js';
import { type ActiveSharing, type Share, type SharingChoice, chooseSharing, sharingBackend } from '../sharing/index.js';
import { GuestChannel } from './channel.js';
import { deadline, whenAborted } from './deadline.js';

export interface RunOptions {
  box: string;
  arch?: Arch;
  /** Extra registry files (later ones override earlier ones and the bundled boxes.json). */
  registryFiles?: string[];
  cacheRoot: string;
  accel: AccelRequest;
  memoryMiB?: number;
  cpus?: number;
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
  signal?: AbortSignal;
}

/** What to run in the guest. */
export interface GuestCommand {
  shares: Share[];
  argv: string[];
  cwd: string;
  env?: Record<string, string>;
}

/** How long a guest that reported its result may take to power off before it is stopped. */
const POWEROFF_GRACE_MS = 10_000;

export function kernelCmdline(box: BoxEntry, arch: Arch, spec: Pick<VmSpec, 'profile' | 'console'>): string {
  return [`console=${consoleName(spec)}`, 'panic=-1', box.cmdline, box.arches[arch]?.cmdline ?? ''].filter(Boolean).join(' ');
}

interface Session {
  runDir?: string;
  sharing?: ActiveSharing;
  vm?: RunningVm;
  channel?: GuestChannel;
}

async function teardown(session: Session): Promise<void> {
  if (session.vm) await session.vm.stop();
  await session.channel?.drained();
  await session.sharing?.stop();
  if (session.runDir) await rm(session.runDir, { recursive: true, force: true });
}

async function bootVm(
  options: RunOptions,
  session: Session,
  box: BoxEntry,
  installed: InstalledBox,
  command: GuestCommand,
  profile: MachineProfile,
): Promise<RunningVm> {
  const runDir = (session.runDir = await mkdtemp(join(tmpdir(), 'boxbuild-')));
  const kernel = join(installed.dir, installed.manifest.files.kernel.name);
  const accel = await resolveAccel(options.accel, {
    profile,
    hostArch: hostArch(),
    kernel,
    cacheRoot: options.cacheRoot,
    notice: options.notice,
  });
  const sharing = await chooseSharing(options.sharing, { virtiofsd: options.virtiofsd });
  if (options.sharing === 'auto') options.notice(`sharing: ${sharing.name} (auto: ${sharing.why})`);
  session.sharing = await sharingBackend(sharing.name, { virtiofsd: options.virtiofsd }).start(command.shares, { runDir, profile });
  session.channel = await GuestChannel.listen(runDir);
  const console = box.console === 'hvc0' ? 'hvc0' : 'serial';
  const spec: VmSpec = {
    profile,
    accel,
    memoryMiB: options.memoryMiB ?? box.memoryMiB,
    cpus: options.cpus ?? box.cpus,
    kernel,
    initrd: join(installed.dir, installed.manifest.files.initrd.name),
    cmdline: kernelCmdline(box, profile.arch, { profile, console }),
    console,
    consoleSocket: join(runDir, 'console.sock'),
    ports: [...session.channel.ports, ...session.sharing.ports],
    sharedMemory: session.sharing.sharedMemory,
    extraArgs: session.sharing.qemuArgs,
  };
  return (session.vm = await launchVm(spec, { runDir, consoleEcho: options.boxDebug ? options.stderr : undefined }));
}

/**
 * Boots a fresh VM of the box, mounts the shares, runs the command with its output streamed,
 * and returns the command's exit status. Everything is torn down on every path.
 */
export async function runInBox(options: RunOptions, makeCommand: (box: BoxEntry) => GuestCommand): Promise<number> {
  const arch = options.arch ?? hostArch();
  const { box } = findBox(loadRegistry(options.registryFiles), options.box, arch);
  const command = makeCommand(box);
  const aborted = whenAborted(options.signal);
  const installed = await Promise.race([ensureBox({ cacheRoot: options.cacheRoot, box, arch, log: options.notice, signal: options.signal, ...options.boxFetch }), aborted]);
  const session: Session = {};
  const overall = deadline(options.timeoutMs, () => new BoxbuildError('timeout', `the build did not finish within --timeout ${options.timeoutMs! / 1000} s; the VM was killed`));
  try {
    const vm = await Promise.race([bootVm(options, session, box, installed, command, PROFILES[arch]), aborted]);
    const vmStarted = Date.now();
    const timing = (what: string) => options.verbose && options.notice(`timing: ${what} ${((Date.now() - vmStarted) / 1000).toFixed(2)} s after QEMU started`);
    const channel = session.channel!;
    const vmGone = vm.exited.then((exit) => {
      throw vmError('vmFailed', `the VM stopped before the guest agent was ready (${describeExit(exit)})`, vm);
    });
    vmGone.catch(() => {});
    const boot = deadline(options.bootTimeoutMs, () =>
      vmError('vmFailed', `the guest showed no sign of life within --boot-timeout ${options.bootTimeoutMs / 1000} s`, vm),
    );
    try {
      await Promise.race([channel.next('ready'), vmGone, boot.promise, overall.promise, aborted]);
    } finally {
      boot.clear();
    }

    timing('guest agent ready');
    channel.pipeOutput(options.stdout, options.stderr);
    await channel.send({ mounts: session.sharing!.mounts, cwd: command.cwd, env: command.env ?? {}, argv: command.argv });
    const lost = vm.exited.then((exit) => {
      throw vmError('guestLost', `the guest stopped without reporting the build's exit status (${describeExit(exit)})`, vm);
    });
    lost.catch(() => {});
    const result = await Promise.race([channel.next('exit', 'error'), lost, overall.promise, aborted]);
    if (result.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${result.message}`);
    timing('command finished');

    // The guest powers off after reporting; its last output arrives before QEMU closes the sockets.
    const poweroff = deadline(POWEROFF_GRACE_MS, () => new Error('poweroff timeout'));
    await Promise.race([vm.exited, poweroff.promise]).catch(() => vm.stop());
    poweroff.clear();
    await channel.drained();
    timing('VM stopped');
    return result.status;
  } finally {
    overall.clear();
    await teardown(session);
  }
}
