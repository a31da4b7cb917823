import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { QemuDriverOptions } from '../../src/driver/qemu/driver.js';
import type { ChannelEnds, Driver, DriverContext, Guest, GuestExit, GuestPlan, Restored, WarmStart } from '../../src/driver/types.js';
import { BoxbuildError } from '../../src/errors.js';
import { listenOnce } from '../../src/qemu/sockets.js';
import type { ActiveSharing } from '../../src/sharing/types.js';

/*
 * A driver for unit tests of the run's orchestration: no VM. Its guest is a few lines of code that
 * speak the agent's protocol over real Unix sockets (the channel's ends): READY, then the command's
 * output and EXIT once it got a request, then it ends at DONE. Every resource it hands out goes
 * into a ledger until its undo ran; each step can be told to hang until the run aborts.
 */

export type Step = 'share' | 'connect' | 'warm' | 'boot' | 'restore' | 'ready' | 'command';

export interface FakeScript {
  /** Steps that never finish (until the run's signal aborts). */
  hang?: Step[];
  /** Whether a saved state exists, and how restoring it ends. */
  saved?: 'restores' | 'refused';
  /** The command's output and status. */
  output?: string;
  status?: number;
  /** An undo step that throws (by resource name). */
  failingUndo?: string;
}

export class FakeDriver {
  /** Resources acquired and not yet undone. */
  readonly held = new Set<string>();
  /** What happened, in order. */
  readonly events: string[] = [];
  private count = 0;

  constructor(readonly script: FakeScript = {}) {}

  /** The factory the run is given (prepareRun's makeDriver). */
  readonly factory = (options: QemuDriverOptions): Driver => this.driver(options.runDir);

  private acquire(ctx: DriverContext, what: string, undo: () => unknown = () => {}): string {
    const name = `${what}#${++this.count}`;
    this.held.add(name);
    this.events.push(`+${name}`);
    ctx.defer(async () => {
      this.events.push(`-${name}`);
      this.held.delete(name);
      await undo();
      if (this.script.failingUndo === what) throw new Error(`undoing ${name} failed`);
    });
    return name;
  }

  private async step(ctx: DriverContext, step: Step): Promise<void> {
    if (!this.script.hang?.includes(step)) return;
    this.events.push(`hang ${step}`);
    await new Promise((_, reject) => {
      if (ctx.signal.aborted) reject(ctx.signal.reason);
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    });
  }

  private driver(runDir: string): Driver {
    const fake = this;
    return {
      async share(ctx) {
        await fake.step(ctx, 'share');
        fake.acquire(ctx, 'sharing');
        const sharing: ActiveSharing = { qemuArgs: [], devices: [], ports: [], sharedMemory: false, mounts: [], stop: async () => {} };
        return sharing;
      },
      async connect(ctx) {
        await fake.step(ctx, 'connect');
        const listen = (name: string) => listenOnce(join(runDir, `${name}-${fake.count}.sock`));
        const [control, stdin, stdout, stderr] = await Promise.all([listen('ctl'), listen('in'), listen('out'), listen('err')]);
        const ends = { control, stdin, stdout, stderr };
        fake.acquire(ctx, 'channel', () => Object.values(ends).forEach((end) => end.close()));
        return ends;
      },
      async boot(ctx, plan) {
        await fake.step(ctx, 'boot');
        return fake.guest(ctx, plan, false);
      },
      async warm(ctx, plan): Promise<WarmStart> {
        await fake.step(ctx, 'warm');
        return {
          restorable: fake.script.saved !== undefined,
          async restore(restoreCtx, ready): Promise<Restored> {
            await fake.step(restoreCtx, 'restore');
            const guest = await fake.guest(restoreCtx, plan, true);
            if (fake.script.saved === 'refused') return { failed: 'the saved VM state could not be restored (refused by the fake)' };
            await ready(restoreCtx.signal);
            return { guest };
          },
          boot: async (bootCtx) => {
            await fake.step(bootCtx, 'boot');
            return fake.guest(bootCtx, plan, false);
          },
          save: async () => void fake.events.push('saved'),
        };
      },
    };
  }

  /** A guest that speaks the agent protocol on the plan's channel. */
  private async guest(ctx: DriverContext, plan: GuestPlan, restored: boolean): Promise<Guest> {
    const name = this.acquire(ctx, restored ? 'restored-guest' : 'booted-guest', () => end({ signal: 'SIGTERM' }));
    this.events.push(restored ? 'restored' : 'booted');
    // Its end closes its ends of the channel, as a VM's does.
    const sockets: Socket[] = [];
    let end: (exit: Omit<GuestExit, 'stderr'>) => void = () => {};
    const exited = new Promise<GuestExit>((resolve) => (end = (exit) => (sockets.forEach((socket) => socket.destroy()), resolve({ ...exit, stderr: '' }))));
    if (plan.channel) sockets.push(...this.speak(plan.channel, restored, () => end({ exitCode: 0 })));
    ctx.vmRuns();
    const guest: Guest = {
      startedAt: Date.now(),
      exited,
      stop: async () => (end({ signal: 'SIGTERM' }), exited),
      disposable: false, // it powers off once told DONE, as a VM with a disk to keep does
      describe: (exit) => `the fake guest ended (${exit.exitCode ?? exit.signal})`,
      error: (kind, message) => new BoxbuildError(kind, `${message} [${name}]`),
      consoleShows: () => Promise.resolve(),
      attach: async () => void this.events.push(`attached ${name}`),
    };
    return guest;
  }

  /** Speaks the protocol on the channel's ends; returns its sockets. */
  private speak(ends: ChannelEnds, restored: boolean, powerOff: () => void): Socket[] {
    const open = (end: { path: string }) => connect(end.path).on('error', () => {});
    const [control, stdin, stdout, stderr] = [open(ends.control), open(ends.stdin), open(ends.stdout), open(ends.stderr)];
    const hangs = (step: Step) => this.script.hang?.includes(step);
    if (!restored && !hangs('ready')) control.write('READY 1\n');
    let text = '';
    control.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('PING\n') && !hangs('ready')) {
        text = text.replace('PING\n', '');
        control.write('READY 1\n');
      }
      if (text.includes('RUN\n') && !hangs('command')) {
        text = '';
        const output = this.script.output ?? '';
        stdout.write(output, () => control.write(`EXIT ${this.script.status ?? 0} ${Buffer.byteLength(output)} 0\n`));
      }
      if (text.includes('DONE\n')) powerOff();
    });
    return [control, stdin, stdout, stderr];
  }
}
