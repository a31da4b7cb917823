import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { BoxbuildError } from '../errors.js';

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  command: string;
}

/** A QMP (QEMU Machine Protocol) client over the monitor socket QEMU connected to. */
export class QmpClient {
  private readonly pending: Pending[] = [];
  private ready: Promise<void>;

  constructor(private readonly socket: Socket) {
    let greeted: () => void;
    this.ready = new Promise((resolve) => (greeted = resolve));
    socket.on('error', () => {});
    socket.on('close', () => this.pending.splice(0).forEach((p) => p.reject(new Error(`QEMU closed its monitor during ${p.command}`))));
    const lines = createInterface({ input: socket });
    lines.on('error', () => {});
    lines.on('line', (line) => {
      const message = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string };
      if (message.QMP) greeted();
      else if ('return' in message) this.pending.shift()?.resolve(message.return);
      else if (message.error) {
        const request = this.pending.shift();
        request?.reject(new Error(`QEMU refused ${request.command}: ${message.error.desc}`));
      }
    });
    this.ready = this.ready.then(async () => void (await this.send('qmp_capabilities')));
  }

  private send(command: string, args?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject, command });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    });
  }

  async execute<T = unknown>(command: string, args?: object): Promise<T> {
    await this.ready;
    return (await this.send(command, args)) as T;
  }
}

/** Quotes a path for the shell QEMU runs `exec:` migration commands with. */
export const shellQuote = (path: string) => `'${path.replace(/'/g, `'\\''`)}'`;

/**
 * Saves the running VM's state into `file` (QEMU's own migration format) and lets it run on.
 * The VM is paused while its memory is written (untouched, zero pages cost nothing) and while
 * `whilePaused` runs (e.g. to copy a disk that must match the state). Gives up when `signal` aborts.
 */
export async function saveVmState(
  qmp: QmpClient,
  file: string,
  { whilePaused, signal, timeoutMs = 60_000 }: { whilePaused?: () => Promise<void>; signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<void> {
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 100 * 1024 ** 3 }); // bytes/s: as fast as it goes
  await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, 'error-desc': error } = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (status === 'completed') break;
    if (status === 'failed' || status === 'cancelled') throw new BoxbuildError('vmFailed', `saving the VM state failed: ${error ?? status}`);
    if (Date.now() > deadline) throw new BoxbuildError('vmFailed', 'saving the VM state took too long');
    await sleep(20, undefined, { signal });
  }
  // QEMU flushed its disks when the migration completed; they stay untouched until `cont`.
  await whilePaused?.();
  await qmp.execute('cont');
}
