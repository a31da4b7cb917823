import type { PluggableDevice, SerialPort } from '../qemu/argv.js';
import type { MachineProfile } from '../qemu/profiles.js';

export type SharingName = '9p' | 'virtiofs' | 'sshfs';

/** A host directory made visible in the guest. */
export interface Share {
  /** Mount tag / channel name, unique within a run. */
  tag: string;
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

/** One mount the guest agent performs: `modprobe -a modules; mount -t fstype -o options source target`. */
export interface GuestMount {
  /** Kernel modules to load first. */
  modules: string[];
  fstype: string;
  source: string;
  target: string;
  options: string;
}

/** A backend's shares, set up on the host for one run. */
export interface ActiveSharing {
  /** QEMU arguments of shares that QEMU serves itself (9p). */
  qemuArgs: string[];
  /**
   * Devices of shares served by a daemon (virtiofs), on QEMU's command line or plugged into the
   * running VM (QEMU cannot save the state of a vhost-user device: a VM that is saved or restored
   * gets them once it runs).
   */
  devices: PluggableDevice[];
  /** Extra virtio-serial ports the backend needs (none for 9p). */
  ports: SerialPort[];
  /** Guest memory must be shareable (vhost-user). */
  sharedMemory: boolean;
  mounts: GuestMount[];
  /**
   * Rejects when a host-side helper stops on its own (the guest lost a share); ends with an
   * AbortError when `signal` aborts. Absent for a backend without helpers (9p).
   */
  lost?: (signal: AbortSignal) => Promise<never>;
  /** Stops host-side helpers; safe to call more than once. */
  stop(): Promise<void>;
}

export interface SharingContext {
  /** The run's private directory (sockets go here). */
  runDir: string;
  profile: MachineProfile;
}

/** How shares cross the VM boundary: host-side start, QEMU arguments, guest mounts, teardown. */
export interface SharingBackend {
  readonly name: SharingName;
  start(shares: Share[], context: SharingContext): Promise<ActiveSharing>;
}
