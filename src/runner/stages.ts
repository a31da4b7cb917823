import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Arch, hostArch } from '../box/arch.js';
import type { InstalledBox } from '../box/cache.js';
import type { ProvenanceInfo } from '../box/provenance.js';
import { type BoxEntry, defaultArch, findBox, loadRegistry } from '../box/registry.js';
import { ensureBox } from '../box/resolve.js';
import { type QemuDriverOptions, qemuDriver } from '../driver/qemu/driver.js';
import type { Driver, Guest } from '../driver/types.js';
import { type EgressProxy, startEgressProxy } from '../network/egress.js';
import { networkOf } from '../network/guest.js';
import { networkWords } from '../network/mode.js';
import type { PackageCache } from '../package-cache/cache.js';
import { resolveAccel } from '../qemu/accel.js';
import { type VmSpec, consoleName } from '../qemu/argv.js';
import type { Accel } from '../qemu/profiles.js';
import type { SharingName } from '../sharing/types.js';
import { egressSocket } from '../qemu/egress-link.js';
import { PROFILES } from '../qemu/profiles.js';
import { type ActiveSharing, chooseSharing } from '../sharing/index.js';
import { type Racer, race, settledWithin, untilAborted, waitFor } from '../util/abort.js';
import { markRunDir, sweepDeadRunDirs } from '../util/run-dirs.js';
import { runDiskScript } from './box-vm.js';
import type { RunContext } from './context.js';
import type { BoxSource, RunIo, RunStarted, VmOptions } from './options.js';

/*
 * The stages every run goes through, whatever the guest protocol (boxbuild's agent, or the KIWI box
 * contract): resolve the box, prepare the run (private directory, egress proxy, accelerator, sharing:
 * a driver), then the protocol's own stages. Each takes the run's context and returns what the next
 * needs; each resource is undone by the context's cleanup.
 */

/** The box entry a run asks for, and the architecture. */
export function lookupBox(options: Pick<BoxSource, 'box' | 'arch' | 'registryFiles' | 'cacheRoot'>): { box: BoxEntry; arch: Arch } {
  const registry = loadRegistry(options.registryFiles, options.cacheRoot);
  const arch = options.arch ?? defaultArch(registry.get(options.box));
  return { box: findBox(registry, options.box, arch).box, arch };
}

/** How long making or downloading a box may take to clean up once the run must end. */
const BOX_STOP_GRACE_MS = 5000;

/**
 * Stage 1: the installed box, made or downloaded first when needed. The box layer stops on the
 * run's signal too: an ending run gives it a moment to remove what it had begun.
 */
export async function resolveBox(ctx: RunContext, options: BoxSource & Pick<RunIo, 'notice'>, box: BoxEntry, arch: Arch): Promise<InstalledBox> {
  ctx.enter(`getting box ${box.name} (${arch})`);
  const getting = ensureBox({ cacheRoot: options.cacheRoot, box, arch, log: options.notice, signal: ctx.signal, runScript: runDiskScript, ...options.boxFetch });
  try {
    return await ctx.wait(getting);
  } catch (error) {
    if (ctx.signal.aborted) await settledWithin(getting, BOX_STOP_GRACE_MS);
    throw error;
  }
}

/** Makes the driver of a run (a local QEMU; tests give a fake one). */
export type DriverFactory = (options: QemuDriverOptions) => Driver;

/** A private directory in TMPDIR, marked as this process's (so that a later run can tell when its owner died); removed with ctx's cleanup. */
export async function privateRunDir(ctx: RunContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  ctx.defer(() => rm(dir, { recursive: true, force: true }));
  await markRunDir(dir);
  return dir;
}

/** A run ready to start guests: its private directory, the driver that starts them, what it runs on. */
export interface PreparedRun {
  runDir: string;
  driver: Driver;
  /** What the run runs on: the box, the accelerator and the sharing backend. */
  provenance: ProvenanceInfo & { accelerator: Accel; sharing: SharingName };
  /** The egress proxy (every run with a network). */
  egress?: EgressProxy;
}

/**
 * The kernel command line of a box. `debug` (--box-debug) takes `quiet` off and asks boxbuild's guest
 * files to trace (boxbuild.debug). An x86_64 guest under TCG keeps time by the ACPI PM timer, not its
 * TSC: the TSC's frequency is calibrated at boot against the PIT, which a loaded host spoils (a guest
 * booted at load 6 took its 2.4 GHz TSC for 75 MHz, and every `sleep 1` lasted 10 s), and a saved
 * state would carry that to every warm start of its shape.
 */
export function kernelCmdline(box: BoxEntry, arch: Arch, spec: Pick<VmSpec, 'profile' | 'console' | 'accel'>, debug = false): string {
  const clock = arch === 'x86_64' && spec.accel === 'tcg' ? 'clocksource=acpi_pm' : '';
  const words = [`console=${consoleName(spec)}`, 'panic=-1', box.cmdline, box.arches[arch]?.cmdline ?? '', clock].join(' ').split(/\s+/).filter(Boolean);
  return (debug ? [...words.filter((word) => word !== 'quiet'), 'boxbuild.debug'] : words).join(' ');
}

/** Where the kernel console goes: --box-console, else the box's console. */
export const consoleDevice = (options: Pick<VmOptions, 'console'>, box: BoxEntry): VmSpec['console'] => ((options.console ?? box.console) === 'hvc0' ? 'hvc0' : 'serial');

/** The run's egress proxy on its socket in `runDir` (every run with a network); closed with ctx's cleanup. */
export async function startEgress(ctx: RunContext, options: Pick<VmOptions, 'network'> & Pick<RunIo, 'notice' | 'verbose'>, runDir: string, packageCache?: PackageCache): Promise<EgressProxy> {
  const network = networkOf(options);
  ctx.detail(`network: ${networkWords(network)}`);
  const proxy = await startEgressProxy({
    listen: { socket: egressSocket(runDir) },
    mode: network.mode === 'full' ? 'full' : 'filtered',
    allow: network.allow,
    cache: packageCache,
    onRefused: options.verbose ? options.notice : undefined,
  });
  ctx.defer(() => proxy.close());
  return proxy;
}

/**
 * Stage 2: the run's private directory, its egress proxy (with the package cache of a KIWI build),
 * the accelerator and the sharing backend, and the driver that starts its guests.
 */
export async function prepareRun(
  ctx: RunContext,
  options: VmOptions & RunIo & Pick<BoxSource, 'cacheRoot'>,
  target: { box: BoxEntry; installed: InstalledBox; kernel: string; packageCache?: PackageCache; coldBecause?: string },
  makeDriver: DriverFactory = qemuDriver,
): Promise<PreparedRun> {
  ctx.enter('preparing the run');
  const { box, installed } = target;
  const arch = installed.manifest.arch;
  const profile = PROFILES[arch];
  // The directories of runs killed before they could remove them go while this run prepares (it never fails).
  const swept = sweepDeadRunDirs(tmpdir());
  const runDir = await privateRunDir(ctx, 'boxbuild-');
  const network = networkOf(options);
  const egress = network.mode === 'none' ? undefined : await startEgress(ctx, options, runDir, target.packageCache);
  ctx.enter('choosing the accelerator');
  const accel = await ctx.wait(resolveAccel(options.accel, { profile, hostArch: hostArch(), kernel: target.kernel, cacheRoot: options.cacheRoot, notice: options.notice }));
  if (process.getuid?.() === 0) {
    ctx.detail('QEMU runs as root, as boxbuild does, so that the files the build writes are yours; the seccomp share filter and -sandbox confine it');
  }
  const sharing = await ctx.wait(chooseSharing(options.sharing, { virtiofsd: options.virtiofsd }));
  if (options.sharing === 'auto') options.notice(`sharing: ${sharing.name} (auto: ${sharing.why})`);
  const driver = makeDriver({
    runDir,
    profile,
    accel,
    box,
    installed,
    machine: options.machine,
    cpu: options.cpu,
    memoryMiB: options.memoryMiB,
    cpus: options.cpus,
    console: consoleDevice(options, box),
    network: network.mode === 'none' ? undefined : network.mode,
    snapshot: options.snapshot ?? true,
    cacheRoot: options.cacheRoot,
    sharing: sharing.name,
    virtiofsd: options.virtiofsd,
    bootTimeoutMs: options.bootTimeoutMs,
    coldBecause: target.coldBecause,
  });
  await swept;
  return { runDir, driver, egress, provenance: { installed, accelerator: accel, sharing: sharing.name } };
}

/** Tells `onStarted` what the run runs on. */
export function reportStarted(options: { onStarted?: (about: RunStarted) => void }, provenance: ProvenanceInfo, warm: boolean): void {
  const { manifest } = provenance.installed;
  options.onStarted?.({ box: manifest.name, arch: manifest.arch, version: manifest.version, accelerator: provenance.accelerator, sharing: provenance.sharing, warm });
}

/** How long a sharing daemon's end may come before the guest's and still be the guest's doing (QEMU closed the daemon's socket). */
const DAEMON_AFTER_GUEST_MS = 2000;

/**
 * The racers that fail a wait when the guest loses a share: a sharing daemon stopped while the guest
 * still runs. A daemon stops on its own once the guest has ended too; that is the end of the run, not a failure.
 */
export function shareLoss(sharing: ActiveSharing, guest: Guest): Array<Racer<never>> {
  const { lost } = sharing;
  if (!lost) return [];
  return [
    async (signal) => {
      try {
        return await lost(signal);
      } catch (error) {
        if (signal.aborted) throw error;
        const guestEnded = await race(signal, [(s) => waitFor(guest.exited, s).then(() => true), (s) => sleep(DAEMON_AFTER_GUEST_MS, false, { signal: s })]);
        if (!guestEnded) throw error;
        return untilAborted(signal);
      }
    },
  ];
}

/** A racer that fails when the guest stops: `message` says what it stopped before. */
export const guestStops =
  (guest: Guest, kind: 'vmFailed' | 'guestLost', message: string): Racer<never> =>
  async (signal) => {
    const exit = await waitFor(guest.exited, signal);
    throw guest.error(kind, `${message} (${guest.describe(exit)})`);
  };
