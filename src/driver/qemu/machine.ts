import { join } from 'node:path';
import type { InstalledBox } from '../../box/cache.js';
import type { BoxEntry } from '../../box/registry.js';
import { NETDEV_ID, type SerialPort, type VmSpec, hotplugPort } from '../../qemu/argv.js';
import { type RunningVm, describeExit, launchVm, vmError } from '../../qemu/launcher.js';
import type { Accel, MachineProfile } from '../../qemu/profiles.js';
import { QmpClient, forwardHostPort, plugDevice } from '../../qemu/qmp.js';
import { type SocketEndpoint, listenOnce } from '../../qemu/sockets.js';
import { waitFor } from '../../util/abort.js';
import type { ChannelEnds, DriverContext, Guest, GuestPlan } from '../types.js';
import { type AttachedDisk, attachSystemDisk } from './system-disk.js';

/*
 * One QEMU VM of a plan, in one place: its spec (machine, memory, disks, ports, devices), its
 * monitor, its system disk, and how it is launched and becomes a Guest.
 */

/** What stays the same for every VM of a run. */
export interface QemuRun {
  runDir: string;
  profile: MachineProfile;
  accel: Accel;
  box: BoxEntry;
  installed: InstalledBox;
  /** --machine, --cpu, --box-memory, --box-smp-cpus (else the box's), the network, --no-snapshot. */
  machine?: string;
  cpu?: string;
  memoryMiB?: number;
  cpus?: number;
  console: VmSpec['console'];
  network: VmSpec['network'];
  snapshot: boolean;
}

/** Names of the virtio-serial ports the guest agent opens (see src/guest/files/agent). */
export const PORT_NAMES = {
  control: 'org.boxbuild.ctl',
  stdin: 'org.boxbuild.in',
  stdout: 'org.boxbuild.out',
  stderr: 'org.boxbuild.err',
} as const;

/** The virtio-serial ports of the agent's channel. */
const channelPorts = (channel?: ChannelEnds): SerialPort[] =>
  channel
    ? [
        { name: PORT_NAMES.control, socket: channel.control.path },
        { name: PORT_NAMES.stdin, socket: channel.stdin.path },
        { name: PORT_NAMES.stdout, socket: channel.stdout.path },
        { name: PORT_NAMES.stderr, socket: channel.stderr.path },
      ]
    : [];

export interface Machine {
  spec: VmSpec;
  disk: AttachedDisk;
  /** QEMU's monitor, one client for the VM (connected once QEMU starts). */
  monitor(): Promise<QmpClient>;
  /** Starts QEMU (stopped with ctx's cleanup): to boot, or (`incoming`) to be restored from `stateFd`. */
  launch(ctx: DriverContext, how?: Pick<VmSpec, 'incoming' | 'ramFile'>, stateFd?: number): Promise<{ vm: RunningVm; guest: Guest }>;
}

/**
 * The VM of `plan`. `hotplug`: the share daemons' devices are plugged in once it runs (a VM that is
 * saved or restored), else they are on the command line. Its monitor socket, system disk and VM
 * are undone with ctx's cleanup.
 */
export async function machineFor(ctx: DriverContext, run: QemuRun, plan: GuestPlan, hotplug: boolean): Promise<Machine> {
  const { runDir, profile, box } = run;
  const pluggable = hotplug ? plan.sharing.devices : [];
  const monitored = hotplug || plan.sshPort !== undefined;
  let qmp: SocketEndpoint | undefined;
  if (monitored) {
    const endpoint = (qmp = await listenOnce(join(runDir, 'qmp.sock')));
    ctx.defer(() => endpoint.close());
  }
  const disk = await attachSystemDisk(run.installed, runDir, run.snapshot);
  ctx.defer(disk.release);
  const spec: VmSpec = {
    profile,
    accel: run.accel,
    machine: run.machine,
    cpu: run.cpu,
    memoryMiB: run.memoryMiB ?? box.memoryMiB,
    cpus: run.cpus ?? box.cpus,
    kernel: plan.kernel,
    initrd: plan.initrd,
    cmdline: plan.cmdline,
    console: run.console,
    consoleSocket: join(runDir, 'console.sock'),
    network: run.network,
    ports: [...channelPorts(plan.channel), ...plan.sharing.ports],
    sharedMemory: plan.sharing.sharedMemory,
    disks: [...(disk.disk ? [disk.disk] : []), ...plan.disks],
    qmpSocket: qmp?.path,
    extraArgs: plan.sharing.qemuArgs,
    ...(pluggable.length ? { hotplugSlots: pluggable.length } : { devices: plan.sharing.devices }),
  };
  let client: Promise<QmpClient> | undefined;
  const monitor = () => (client ??= qmp ? qmp.connection.then((socket) => new QmpClient(socket)) : Promise.reject(new Error('this VM has no monitor')));

  /** What a saved state cannot hold, once the guest runs: the SSH channel's port (the run's own), the share daemons' devices. */
  const attach = async (attachCtx: DriverContext) => {
    if (!monitored) return;
    const qmpClient = await waitFor(monitor(), attachCtx.signal);
    if (plan.sshPort !== undefined) await forwardHostPort(qmpClient, NETDEV_ID, plan.sshPort, 22);
    for (const [index, device] of pluggable.entries()) await plugDevice(qmpClient, device, profile.hotplugPorts ? hotplugPort(index) : undefined);
  };

  const launch: Machine['launch'] = async (launchCtx, how = {}, stateFd) => {
    launchCtx.signal.throwIfAborted();
    const vm = await launchVm({ ...spec, ...how }, { runDir, stateFd, consoleEcho: plan.consoleEcho });
    launchCtx.defer(() => vm.stop());
    launchCtx.vmRuns();
    launchCtx.detail(`timing: QEMU started ${process.uptime().toFixed(2)} s after boxbuild started`);
    const guest: Guest = {
      startedAt: vm.startedAt,
      exited: vm.exited,
      stop: () => vm.stop(),
      disposable: run.snapshot && plan.disks.length === 0,
      describe: describeExit,
      error: (kind, message) => vmError(kind, message, vm),
      consoleShows: (pattern, signal) => vm.console.whenShown(pattern, signal).then(() => {}),
      get consoleInput() {
        return vm.console.input;
      },
      attach,
    };
    return { vm, guest };
  };
  return { spec, disk, monitor, launch };
}
