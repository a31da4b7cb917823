import type { Readable, Writable } from 'node:stream';
import type { Arch } from '../box/arch.js';
import type { BoxRequest } from '../box/resolve.js';
import type { NetworkChoice } from '../network/mode.js';
import type { AccelRequest } from '../qemu/accel.js';
import type { DiskSpec } from '../qemu/argv.js';
import type { Share, SharingChoice } from '../sharing/index.js';
import type { HostTerminal } from './terminal.js';

/* What a run is asked for, by concern: where the box comes from, what the VM is, where its I/O goes, what ends it. */

/** Where the box comes from. */
export interface BoxSource {
  box: string;
  arch?: Arch;
  /** Extra registry files (later ones override earlier ones and the bundled boxes.json). */
  registryFiles?: string[];
  cacheRoot: string;
  /** How the box is fetched: whether a cached box's server is asked for a new version; where progress bars go. */
  boxFetch?: Pick<BoxRequest, 'updateCheck' | 'progress'>;
}

/** What the VM is. */
export interface VmOptions {
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
  /** Echo the guest console to stderr (--box-debug). */
  boxDebug?: boolean;
  /** Run in a podman container of the box's root file system instead of a VM (--container). */
  container?: boolean;
}

/** Where the run's input and output go. */
export interface RunIo {
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
  /** Print how long each phase took (notices starting with "timing:"), and what was decided. */
  verbose?: boolean;
}

/** What ends a run early, and who hears how it went. */
export interface RunControl {
  /** Limit for the whole run, from its start (box download and lock waits included). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Told what the run runs on once its VM runs (for a machine-readable result, --result). */
  onStarted?: (about: RunStarted) => void;
  /** What messages call the limits: the CLI's options (default), or the library's fields. */
  optionNames?: { timeout: string; bootTimeout: string };
}

export const CLI_OPTION_NAMES = { timeout: '--timeout', bootTimeout: '--boot-timeout' };

export interface RunOptions extends BoxSource, VmOptions, RunIo, RunControl {}

/** What a run runs on: told once its VM runs. */
export interface RunStarted {
  box: string;
  arch: string;
  version: string;
  accelerator: string;
  sharing: string;
  warm: boolean;
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
