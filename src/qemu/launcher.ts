import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { BoxbuildError } from '../errors.js';
import { type VmSpec, buildQemuArgs } from './argv.js';
import { ConsoleLog } from './console-log.js';
import { EGRESS_SOCKET_VARIABLE, egressSocket } from './egress-link.js';
import { listenOnce } from './sockets.js';
import { diesWithParent } from '../util/orphans.js';
import { underShareFilter } from '../sandbox/exec.js';
import { Child } from '../util/child.js';

export interface VmExit {
  exitCode?: number;
  signal?: string;
  /** What QEMU itself printed on stderr. */
  stderr: string;
}

/** A running QEMU: its console, its end, and a way to stop it. */
export interface RunningVm {
  readonly pid: number | undefined;
  /** When QEMU was started (Date.now()). */
  readonly startedAt: number;
  readonly console: ConsoleLog;
  /** Resolves when QEMU has exited (never rejects). */
  readonly exited: Promise<VmExit>;
  /** Stops QEMU (SIGTERM, SIGKILL after a grace period) and waits for it. */
  stop(): Promise<VmExit>;
}

export interface LaunchOptions {
  /** The run's private directory: console socket and log go here. */
  runDir: string;
  /** Echo the console here (`--box-debug`). */
  consoleEcho?: Writable;
  /** An open saved state for QEMU to inherit as STATE_FD (a VM started to be restored). */
  stateFd?: number;
  qemuBinary?: string;
}

/** Starts QEMU for a spec whose console socket is `<runDir>/console.sock`. */
export async function launchVm(spec: VmSpec, options: LaunchOptions): Promise<RunningVm> {
  const consoleEndpoint = await listenOnce(spec.consoleSocket);
  const console = new ConsoleLog(join(options.runDir, 'console.log'), options.consoleEcho);
  void consoleEndpoint.connection.then((socket) => console.attach(socket));
  const binary = options.qemuBinary ?? spec.profile.qemuBinary;
  // QEMU's 9p server writes into the shares on the guest's behalf: it runs under the share filter.
  const [file, ...args] = diesWithParent(underShareFilter([binary, ...buildQemuArgs(spec)]));
  const startedAt = Date.now();
  // The guest forward's connector finds the run's egress proxy through QEMU's environment.
  const env = spec.network ? { ...process.env, [EGRESS_SOCKET_VARIABLE]: egressSocket(options.runDir) } : undefined;
  const child = new Child(file!, args, { stdio: ['ignore', 'ignore', 'pipe', ...(options.stateFd === undefined ? [] : [options.stateFd])], env });
  const exited = child.ended.then(async (end): Promise<VmExit> => {
    consoleEndpoint.close();
    await console.close();
    const stderr = end.stderr.trim();
    // Not found: spawn fails with ENOENT, setpriv could not execute perl, or perl could not execute QEMU.
    if (end.startError?.code === 'ENOENT' || /failed to execute perl/.test(stderr)) {
      return { stderr: 'perl not found: boxbuild confines QEMU with a seccomp filter that perl loads (Debian: apt-get install perl-base)' };
    }
    if (stderr.startsWith(`boxbuild-sandbox: cannot run ${binary}`)) return { stderr: `${binary} not found: install QEMU (Debian: apt-get install qemu-system)` };
    if (end.startError) return { stderr: end.startError.message };
    return { exitCode: end.exitCode, signal: end.signal, stderr };
  });
  return {
    pid: child.pid,
    startedAt,
    console,
    exited,
    stop: async () => {
      await child.stop();
      return exited;
    },
  };
}

/** One line saying why QEMU ended, for error messages. */
export function describeExit(exit: VmExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with status ${exit.exitCode ?? 'unknown'}`;
  const said = exit.stderr.split('\n').filter(Boolean).pop();
  return said ? `QEMU ${how}: ${said}` : `QEMU ${how}`;
}

export function vmError(kind: 'vmFailed' | 'guestLost', message: string, vm: RunningVm): BoxbuildError {
  const tail = vm.console.tail();
  return new BoxbuildError(kind, message, { detail: tail ? `last console lines:\n${tail}` : 'the guest printed nothing on its console' });
}
