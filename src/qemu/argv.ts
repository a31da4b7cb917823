import { EGRESS_GUESTFWD } from './egress-link.js';
import { type Accel, type MachineProfile, virtioDevice } from './profiles.js';

/** A virtio-serial port whose host end is a Unix socket that boxbuild listens on. */
export interface SerialPort {
  name: string;
  socket: string;
}

/**
 * A disk image file in a format boxbuild determined itself (see image-file.ts). A qcow2 layer's
 * backing layer is given here, or it has none: QEMU is told every layer and follows no file name an
 * image's header holds.
 */
export type DiskLayer = { path: string; format: 'raw' } | { path: string; format: 'qcow2'; backing?: DiskLayer };

/** A virtio block device. Throwaway overlays use cache=unsafe (flushes are pointless there). */
export type DiskSpec = DiskLayer & {
  cache: 'unsafe' | 'writeback';
  readOnly?: boolean;
};

/** The user network's id: forwards from the host are added to it over QMP (forwardHostPort). */
export const NETDEV_ID = 'net0';

/**
 * Guest RAM held in a file. `shared`: the guest writes through to the file (a VM whose state will be
 * saved: the file, copied, is the RAM of the state). Otherwise the file is mapped copy-on-write (a
 * restored VM): pages are read only when the guest touches them, and its writes stay its own.
 * Either way the migration stream leaves this RAM out (x-ignore-shared, see saveVmState).
 */
export interface RamFile {
  path: string;
  shared: boolean;
}

/**
 * A device with an optional socket chardev of its own, described once for both ways it reaches a
 * VM: on QEMU's command line (deviceArgs) or plugged into a running VM over QMP (plugDevice).
 */
export interface PluggableDevice {
  /** A Unix socket QEMU connects to as a client. */
  chardev?: { id: string; path: string };
  driver: string;
  id: string;
  /** The device's other properties (numbers stay numbers: QMP checks their types). */
  props: Record<string, string | number>;
}

/** Command-line arguments for a pluggable device. */
export function deviceArgs(device: PluggableDevice): string[] {
  const chardev = device.chardev ? ['-chardev', `socket,id=${device.chardev.id},path=${qemuOptionValue(device.chardev.path)}`] : [];
  const props = Object.entries({ id: device.id, ...(device.chardev ? { chardev: device.chardev.id } : {}), ...device.props });
  return [...chardev, '-device', [device.driver, ...props.map(([name, value]) => `${name}=${qemuOptionValue(String(value))}`)].join(',')];
}

/** The PCI Express root port that hot-plug slot `index` names (profile.hotplugPorts). */
export const hotplugPort = (index: number) => `hotplug${index}`;

/** Everything QEMU needs to start one throwaway VM. Pure data: no paths are touched here. */
export interface VmSpec {
  profile: MachineProfile;
  accel: Accel;
  /** Overrides the profile's machine type / CPU model. */
  machine?: string;
  cpu?: string;
  memoryMiB: number;
  cpus: number;
  kernel: string;
  initrd?: string;
  cmdline: string;
  /** Where the kernel console goes: a Unix socket that boxbuild listens on. */
  consoleSocket: string;
  /** The kernel console device: the machine's serial port, or hvc0 (virtconsole). */
  console: 'serial' | 'hvc0';
  ports: SerialPort[];
  /** Memory must be shareable with a vhost-user daemon (virtiofs). */
  sharedMemory?: boolean;
  /** Guest RAM in a file (warm start); shareable too when `ramFile.shared`. */
  ramFile?: RamFile;
  /** Free slots for devices plugged in once the VM runs (on PCI Express machines, a root port each). */
  hotplugSlots?: number;
  disks?: DiskSpec[];
  /**
   * QEMU user networking (no root, no bridge) on a virtio NIC, with the egress proxy's forward:
   * `filtered` lets the guest reach nothing else (restrict=on), `full` everything slirp reaches.
   * Without it the VM has no network at all.
   */
  network?: 'filtered' | 'full';
  /** QMP monitor: a Unix socket that boxbuild listens on (for saving the VM's state). */
  qmpSocket?: string;
  /** Wait for a saved state instead of booting (restoreVmState names it over QMP). */
  incoming?: boolean;
  /** Arguments of shares QEMU serves itself (9p). */
  extraArgs?: string[];
  /** Devices on the command line (a share daemon's, when not plugged in once the VM runs). */
  devices?: PluggableDevice[];
}

/** A -blockdev node of a layer and the layers below it; `backing: null` ends the chain. */
function layerNode(layer: DiskLayer): Record<string, unknown> {
  const file = { driver: 'file', filename: layer.path };
  if (layer.format === 'raw') return { driver: 'raw', file };
  return { driver: 'qcow2', file, backing: layer.backing ? layerNode(layer.backing) : null };
}

function diskArgs(spec: VmSpec): string[] {
  return (spec.disks ?? []).flatMap((disk, index) => {
    // The layers below inherit the cache mode; backing layers are opened read-only.
    const node = { ...layerNode(disk), 'node-name': `disk${index}`, cache: { direct: false, 'no-flush': disk.cache === 'unsafe' }, ...(disk.readOnly ? { 'read-only': true } : {}) };
    return ['-blockdev', JSON.stringify(node), '-device', `${virtioDevice(spec.profile, 'blk')},drive=disk${index}`];
  });
}

function memoryArgs(spec: VmSpec): string[] {
  const size = `size=${spec.memoryMiB}M`;
  if (!spec.ramFile) return spec.sharedMemory ? ['-object', `memory-backend-memfd,id=mem,${size},share=on`, '-machine', 'memory-backend=mem'] : [];
  const { path, shared } = spec.ramFile;
  return [
    '-object', `memory-backend-file,id=mem,${size},mem-path=${qemuOptionValue(path)},share=${shared ? 'on' : 'off'}`,
    '-machine', 'memory-backend=mem',
  ];
}

function networkArgs(spec: VmSpec): string[] {
  if (!spec.network) return ['-nic', 'none'];
  // restrict=on: slirp drops every connection and datagram of the guest but the guest forward (DNS
  // included); forwards from the host (the SSH channel's) still work. IPv6 off: one family to filter.
  const restrict = spec.network === 'filtered' ? ['restrict=on', 'ipv6=off'] : [];
  const netdev = ['user', `id=${NETDEV_ID}`, ...restrict, `guestfwd=${qemuOptionValue(EGRESS_GUESTFWD)}`].join(',');
  return ['-netdev', netdev, '-device', `${virtioDevice(spec.profile, 'net')},netdev=${NETDEV_ID},romfile=`];
}

/** Escapes a value for QEMU's comma-separated option syntax. */
export const qemuOptionValue = (value: string) => value.replaceAll(',', ',,');

/** Builds QEMU's argv (without the binary) for a VM spec. */
export function buildQemuArgs(spec: VmSpec): string[] {
  const { profile } = spec;
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-no-reboot',
    // QEMU's own seccomp: no obsolete calls, no scheduler changes, and without a network no
    // processes (states are saved to a socket and restored from an inherited file); with one, the
    // guest forward starts the egress connector. Its elevateprivileges=deny is left out: it made
    // restoring a system box 5x slower, and the share filter already keeps the setuid family to
    // QEMU's own ids.
    '-sandbox', `on,obsolete=deny,resourcecontrol=deny${spec.network ? '' : ',spawn=deny'}`,
    '-machine', spec.machine ?? profile.machine,
    '-accel', spec.accel === 'tcg' ? 'tcg,thread=multi' : 'kvm',
    '-cpu', spec.cpu ?? profile.cpu[spec.accel],
    '-smp', String(spec.cpus),
    '-m', `${spec.memoryMiB}M`,
  ];
  args.push(...memoryArgs(spec));
  args.push('-kernel', spec.kernel);
  if (spec.initrd) args.push('-initrd', spec.initrd);
  args.push('-append', spec.cmdline);
  args.push(...diskArgs(spec), ...networkArgs(spec));
  args.push('-chardev', `socket,id=console,path=${qemuOptionValue(spec.consoleSocket)}`);
  args.push('-device', `${virtioDevice(profile, 'serial')},id=vser`);
  if (spec.console === 'serial') args.push('-serial', 'chardev:console');
  else args.push('-device', 'virtconsole,bus=vser.0,chardev=console');
  spec.ports.forEach((port, index) => {
    args.push('-chardev', `socket,id=port${index},path=${qemuOptionValue(port.socket)}`);
    args.push('-device', `virtserialport,bus=vser.0,chardev=port${index},name=${port.name}`);
  });
  args.push('-device', virtioDevice(profile, 'rng'));
  if (profile.vmGenerationId) args.push('-device', 'vmgenid');
  if (spec.qmpSocket) args.push('-chardev', `socket,id=qmp,path=${qemuOptionValue(spec.qmpSocket)}`, '-mon', 'chardev=qmp,mode=control');
  if (profile.hotplugPorts) {
    for (let index = 0; index < (spec.hotplugSlots ?? 0); index++) args.push('-device', `pcie-root-port,id=${hotplugPort(index)},chassis=${index + 1}`);
  }
  args.push(...(spec.extraArgs ?? []), ...(spec.devices ?? []).flatMap(deviceArgs));
  if (spec.incoming) args.push('-incoming', 'defer');
  return args;
}

/** The kernel console name for a spec (goes into the kernel command line). */
export function consoleName(spec: Pick<VmSpec, 'profile' | 'console'>): string {
  return spec.console === 'serial' ? spec.profile.serialConsole : 'hvc0';
}

