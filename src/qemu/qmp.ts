import { createWriteStream } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { PRIVATE_FILE } from '../box/modes.js';
import { BoxbuildError } from '../errors.js';
import { type PluggableDevice } from './argv.js';
import { listenOnce } from './sockets.js';
import { readLines } from '../util/lines.js';

/** QMP's answers are short; a longer line means something is wrong with QEMU. */
const MAX_LINE_BYTES = 1024 * 1024;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  command: string;
}

/**
 * A QMP (QEMU Machine Protocol) client over the monitor socket QEMU connected to. Commands are
 * sent at once, without waiting for QEMU's greeting or earlier answers: QEMU reads them in order
 * (the capabilities negotiation first), which saves a round trip per command on a restore.
 */
export class QmpClient {
  private readonly pending: Pending[] = [];

  constructor(private readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('close', () => this.pending.splice(0).forEach((p) => p.reject(new Error(`QEMU closed its monitor during ${p.command}`))));
    readLines(socket, MAX_LINE_BYTES, {
      line: (line) => {
        const message = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string };
        if ('return' in message) this.pending.shift()?.resolve(message.return);
        else if (message.error) {
          const request = this.pending.shift();
          request?.reject(new Error(`QEMU refused ${request.command}: ${message.error.desc}`));
        }
      },
      tooLong: () => socket.destroy(), // fails the commands waiting (see 'close')
    });
    this.send('qmp_capabilities').catch(() => {}); // a QEMU that closes its monitor fails the commands that follow
  }

  private send(command: string, args?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, command });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    });
  }

  async execute<T = unknown>(command: string, args?: object): Promise<T> {
    return (await this.send(command, args)) as T;
  }
}

/** Leave RAM that lives in a shared file out of the migration stream: the file itself is the saved RAM. */
const ignoreSharedRam = (qmp: QmpClient) =>
  qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });

/**
 * Saves the running VM's state into `file` (QEMU's own migration format, without its file-backed
 * RAM) and lets it run on. QEMU writes to a socket in `runDir` that this process copies into the
 * file (QEMU itself starts no process). The VM is paused while its devices are written and while
 * `whilePaused` runs (e.g. to copy the RAM file and a disk that must match the state). Gives up
 * when `signal` aborts.
 */
export async function saveVmState(
  qmp: QmpClient,
  file: string,
  { runDir, whilePaused, signal, timeoutMs = 60_000 }: { runDir: string; whilePaused?: () => Promise<void>; signal?: AbortSignal; timeoutMs?: number },
): Promise<void> {
  const endpoint = await listenOnce(join(runDir, 'save.sock'));
  let migrating = false;
  try {
    const written = endpoint.connection.then((socket) => pipeline(socket, createWriteStream(file, { mode: PRIVATE_FILE })));
    written.catch(() => {});
    await ignoreSharedRam(qmp);
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 100 * 1024 ** 3 }); // bytes/s: as fast as it goes
    migrating = true;
    await qmp.execute('migrate', { uri: `unix:${endpoint.path}` });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status, 'error-desc': error } = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (status === 'completed') break;
      if (status === 'failed' || status === 'cancelled') throw new BoxbuildError('vmFailed', `saving the VM state failed: ${error ?? status}`);
      if (Date.now() > deadline) throw new BoxbuildError('vmFailed', 'saving the VM state took too long');
      await sleep(20, undefined, { signal });
    }
    await written;
    // QEMU flushed its disks when the migration completed; they stay untouched until `cont`.
    await whilePaused?.();
  } catch (error) {
    // Whatever failed (a full disk, a timeout), the guest must run on: a paused one would hang the run.
    // (A run that is ending stops the VM instead.)
    if (migrating && !signal?.aborted) await resume(qmp, error);
    throw error;
  } finally {
    endpoint.close();
  }
  await resume(qmp);
}

/** Lets a VM paused for a save run on; after a `failure` the migration may still go on, so it is cancelled first. */
async function resume(qmp: QmpClient, failure?: unknown): Promise<void> {
  try {
    if (failure) await qmp.execute('migrate_cancel');
    await qmp.execute('cont');
  } catch (error) {
    throw new VmNotResumed(`the VM could not be resumed after saving its state${failure ? ` failed (${(failure as Error).message})` : ''}: ${(error as Error).message}`, { cause: failure ?? error });
  }
}

/** A VM left paused by a save: unlike a failed save, this ends the run. */
export class VmNotResumed extends BoxbuildError {
  constructor(message: string, options: { cause?: unknown }) {
    super('vmFailed', message, options);
  }
}

/**
 * Forwards `hostPort` on the host's 127.0.0.1 to `guestPort` in the guest, on the user network
 * `netdev`: added to a running VM, so that a restored one gets its own run's port.
 */
export async function forwardHostPort(qmp: QmpClient, netdev: string, hostPort: number, guestPort: number): Promise<void> {
  const said = await qmp.execute<string>('human-monitor-command', { 'command-line': `hostfwd_add ${netdev} tcp:127.0.0.1:${hostPort}-:${guestPort}` });
  if (said.trim()) throw new BoxbuildError('vmFailed', `cannot forward port ${hostPort} to the guest: ${said.trim()}`);
}

/**
 * Plugs a device into the running VM: its chardev first (QEMU connects to the socket), then the
 * device, on `bus` when given (a PCI Express root port), else wherever the machine has room.
 */
export async function plugDevice(qmp: QmpClient, device: PluggableDevice, bus?: string): Promise<void> {
  if (device.chardev) {
    const addr = { type: 'unix', data: { path: device.chardev.path } };
    await qmp.execute('chardev-add', { id: device.chardev.id, backend: { type: 'socket', data: { addr, server: false } } });
  }
  await qmp.execute('device_add', { driver: device.driver, id: device.id, ...(device.chardev ? { chardev: device.chardev.id } : {}), ...device.props, ...(bus ? { bus } : {}) });
}

/** The file descriptor a restored QEMU inherits its saved state on (LaunchOptions.stateFd). */
export const STATE_FD = 3;

/**
 * Restores a VM started with `-incoming defer` and the state saveVmState wrote open on STATE_FD;
 * the VM runs as soon as QEMU has loaded it (and QEMU exits when it cannot).
 */
export async function restoreVmState(qmp: QmpClient): Promise<void> {
  // Both sent at once, in this order.
  await Promise.all([ignoreSharedRam(qmp), qmp.execute('migrate-incoming', { uri: `fd:${STATE_FD}` })]);
}
