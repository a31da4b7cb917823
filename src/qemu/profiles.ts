import type { Arch } from '../box/arch.js';

export type Accel = 'kvm' | 'tcg';

/** How QEMU emulates one architecture: binary, machine, CPU model, bus and console. */
export interface MachineProfile {
  arch: Arch;
  qemuBinary: string;
  machine: string;
  /** CPU model per accelerator: the host CPU with KVM, a model that emulates fast under TCG. */
  cpu: Record<Accel, string>;
  /** Suffix of virtio device names on this machine's bus ("pci" → virtio-9p-pci). */
  virtioBus: 'pci' | 'ccw' | 'device';
  /** Kernel console on the machine's first serial port. */
  serialConsole: string;
  /** The machine has ACPI for a VM generation ID: a restored guest then reseeds its random generator. */
  vmGenerationId: boolean;
  /** PCI Express: a device plugged into the running VM needs a free root port (else it goes on the root bus). */
  hotplugPorts: boolean;
}

export const PROFILES: Record<Arch, MachineProfile> = {
  x86_64: {
    arch: 'x86_64',
    qemuBinary: 'qemu-system-x86_64',
    // "pc" never hung in 30 TCG boots ("microvm" did in 1-3 of 15); no HPET saves boot time.
    machine: 'pc,hpet=off',
    cpu: { kvm: 'host', tcg: 'max' },
    virtioBus: 'pci',
    serialConsole: 'ttyS0',
    vmGenerationId: true,
    hotplugPorts: false,
  },
  aarch64: {
    arch: 'aarch64',
    qemuBinary: 'qemu-system-aarch64',
    machine: 'virt,gic-version=max',
    // "max" emulates pointer authentication slowly (6.4 s to userspace vs 1.5 s for cortex-a57).
    cpu: { kvm: 'host', tcg: 'cortex-a57' },
    virtioBus: 'pci',
    serialConsole: 'ttyAMA0',
    vmGenerationId: false,
    hotplugPorts: true,
  },
  s390x: {
    arch: 's390x',
    qemuBinary: 'qemu-system-s390x',
    machine: 's390-ccw-virtio',
    cpu: { kvm: 'host', tcg: 'max' },
    virtioBus: 'ccw',
    serialConsole: 'ttysclp0',
    vmGenerationId: false,
    hotplugPorts: false,
  },
  ppc64le: {
    arch: 'ppc64le',
    qemuBinary: 'qemu-system-ppc64',
    machine: 'pseries',
    cpu: { kvm: 'host', tcg: 'power9' },
    virtioBus: 'pci',
    serialConsole: 'hvc0',
    vmGenerationId: false,
    hotplugPorts: false,
  },
  riscv64: {
    arch: 'riscv64',
    qemuBinary: 'qemu-system-riscv64',
    machine: 'virt',
    cpu: { kvm: 'host', tcg: 'rv64' },
    virtioBus: 'pci',
    serialConsole: 'ttyS0',
    vmGenerationId: false,
    hotplugPorts: true,
  },
};

/** A device model for this machine's bus: ("vhost-user-fs") → "vhost-user-fs-pci". */
export function deviceOnBus(profile: MachineProfile, device: string): string {
  return `${device}-${profile.virtioBus}`;
}

/** A virtio device for this machine's bus: ("9p") → "virtio-9p-pci". */
export function virtioDevice(profile: MachineProfile, kind: string): string {
  return deviceOnBus(profile, `virtio-${kind}`);
}
