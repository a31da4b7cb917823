import type { Writable } from 'node:stream';
import type { SocketEndpoint } from '../qemu/sockets.js';
import type { ActiveSharing, Share } from '../sharing/types.js';
import type { BoxbuildError } from '../errors.js';
import type { DiskSpec } from '../qemu/argv.js';

/*
 * Where a build runs, behind one small interface (as lima's driver.Driver separates its QEMU and VZ
 * drivers): a driver shares directories, carries the guest agent's channel, boots a guest or
 * restores a saved one, and stops it. The run's stages (src/runner/stages.ts) know no more of it.
 * One driver today: a local QEMU (src/driver/qemu).
 */

/** What a driver gets of the run: the signal every wait is given, and where undo steps go. */
export interface DriverContext {
  readonly signal: AbortSignal;
  /** Registers the undo of a resource just acquired (run last-in-first-out when the run or attempt ends). */
  defer(undo: () => unknown): void;
  /** Notes that a guest runs from now on. */
  vmRuns(): void;
  notice(line: string): void;
  /** A notice shown with --verbose only. */
  detail(line: string): void;
}

/** The host ends of the guest agent's byte streams, which the guest connects once it runs. */
export interface ChannelEnds {
  control: SocketEndpoint;
  stdin: SocketEndpoint;
  stdout: SocketEndpoint;
  stderr: SocketEndpoint;
}

/** How a guest ended. */
export interface GuestExit {
  exitCode?: number;
  signal?: string;
  /** What the hypervisor itself printed about it. */
  stderr: string;
}

/** A running guest. */
export interface Guest {
  /** When it was started (Date.now()). */
  readonly startedAt: number;
  /** Resolves when it has ended (never rejects). */
  readonly exited: Promise<GuestExit>;
  /** Stops it and waits for its end (safe to call more than once). */
  stop(): Promise<GuestExit>;
  /**
   * Nothing it writes outlives it but what it wrote to the shares (its disks are throwaway overlays):
   * once its agent has reported and unmounted them, it is stopped instead of waited for to power off.
   */
  readonly disposable: boolean;
  /** One line saying how it ended. */
  describe(exit: GuestExit): string;
  /** An error about the guest, with the last lines of its console. */
  error(kind: 'vmFailed' | 'guestLost', message: string): BoxbuildError;
  /** Resolves once the console has shown a line matching `pattern` (ends with an AbortError on `signal`). */
  consoleShows(pattern: RegExp, signal: AbortSignal): Promise<void>;
  /** What is typed on the console (a KIWI box's debug shell reads it). */
  readonly consoleInput?: Writable;
  /**
   * Once the guest runs, booted or restored, before it mounts anything: what a saved state cannot
   * hold (devices of shares served by a daemon, the SSH channel's forward).
   */
  attach(ctx: DriverContext): Promise<void>;
}

/** The guest to start: box files, kernel command line, disks, shares, channel. */
export interface GuestPlan {
  kernel: string;
  initrd: string;
  cmdline: string;
  /** Disks besides the box's system disk (box making attaches the disk it prepares). */
  disks: DiskSpec[];
  /** The shares, and how they are shared. */
  shares: Share[];
  sharing: ActiveSharing;
  /** The guest agent's channel (boxbuild's protocol); none for a KIWI box. */
  channel?: ChannelEnds;
  /** Where the console is echoed (--box-debug; a KIWI box's build output). */
  consoleEcho?: Writable;
  /** The SSH channel: the host port forwarded to the guest's sshd. */
  sshPort?: number;
}

/** A guest restored from a saved state, or why it was not (the run then boots). */
export type Restored = { guest: Guest } | { failed: string };

/** A saved state a plan could start from, and how to keep a new one. */
export interface WarmStart {
  /** A saved state of the plan's shape exists. */
  readonly restorable: boolean;
  /**
   * Restores it and waits until `ready` (the agent answered): a state the hypervisor refuses, or a
   * guest that does not answer, is a failure (the state is dropped when it is the state's fault).
   */
  restore(ctx: DriverContext, ready: (signal: AbortSignal) => Promise<void>): Promise<Restored>;
  /** Boots the guest so that its state can be saved (`save`, once its agent is ready). */
  boot(ctx: DriverContext): Promise<Guest>;
  /** Saves the state of the guest `boot` started, for the next runs; a failure is told, not thrown (unless the guest cannot run on). */
  save(ctx: DriverContext): Promise<void>;
}

export interface Driver {
  /** Makes `shares` visible to the guest to come; its helpers stop with ctx's cleanup. */
  share(ctx: DriverContext, shares: Share[]): Promise<ActiveSharing>;
  /** The ends of the guest agent's channel, ready before the guest starts; closed with ctx's cleanup. */
  connect(ctx: DriverContext): Promise<ChannelEnds>;
  /** Boots the guest of `plan`; it is stopped with ctx's cleanup. */
  boot(ctx: DriverContext, plan: GuestPlan): Promise<Guest>;
  /**
   * Warm start for `plan`: restore a saved state of its shape, or boot one to be saved. Undefined
   * when this guest always boots (told why with --verbose).
   */
  warm(ctx: DriverContext, plan: GuestPlan): Promise<WarmStart | undefined>;
}
