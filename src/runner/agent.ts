import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { InstalledBox } from '../box/cache.js';
import { writeProvenance } from '../box/provenance.js';
import type { BoxEntry } from '../box/registry.js';
import type { DiskScriptRunner } from '../box/resolve.js';
import type { Guest, GuestPlan, WarmStart } from '../driver/types.js';
import { BoxbuildError, usageError } from '../errors.js';
import { guestNetworkEnvironment, networkOf } from '../network/guest.js';
import { PROFILES } from '../qemu/profiles.js';
import { type Racer, after, waitFor } from '../util/abort.js';
import type { ChildEnd } from '../util/child.js';
import { GuestChannel } from './channel.js';
import { type RunContext, inRun } from './context.js';
import { CLI_OPTION_NAMES, type GuestCommand, type RunIo, type RunOptions, type VmOptions } from './options.js';
import { type GuestMessage, type GuestRequest, encodeCommand, encodeRequest, encodeSshdRequest, encodeWindowSize } from './protocol.js';
import { type SshSetup, prepareSsh, startSshSession } from './ssh-channel.js';
import { type DriverFactory, type PreparedRun, consoleDevice, guestStops, kernelCmdline, lookupBox, prepareRun, reportStarted, resolveBox, shareLoss } from './stages.js';
import { terminalLender, windowSize } from './terminal.js';

/*
 * A run of boxbuild's agent protocol: the guest's agent mounts the shares, runs the command with its
 * output streamed over the channel, and reports its status. Stages: resolve the box, prepare the
 * run (stages.ts), start the guest (restored, or booted and saved), speak the protocol, collect.
 */

/** How long a guest that reported its result may take to power off before it is stopped. */
const POWEROFF_GRACE_MS = 10_000;
/** How long the command's status may take to arrive on the control port after its SSH session ended. */
const SSH_STATUS_GRACE_MS = 5000;

/** What every attempt to start the guest boots, whatever its shares and channel. */
type BasePlan = Omit<GuestPlan, 'shares' | 'sharing' | 'channel'>;

/** A guest whose agent is ready, and how it started. */
interface StartedGuest {
  guest: Guest;
  channel: GuestChannel;
  plan: GuestPlan;
  warm: boolean;
}

/** One attempt's shares and channel, the plan they make, and its warm start (if it may have one). */
interface Attempt {
  plan: GuestPlan;
  channel: GuestChannel;
  warm?: WarmStart;
}

async function setUpAttempt(ctx: RunContext, prepared: PreparedRun, command: GuestCommand, base: BasePlan): Promise<Attempt> {
  const { driver } = prepared;
  const sharing = await driver.share(ctx, command.shares);
  const ends = await driver.connect(ctx);
  const channel = new GuestChannel(ends);
  ctx.defer(() => channel.drained());
  const plan: GuestPlan = { ...base, shares: command.shares, sharing, channel: ends };
  return { plan, channel, warm: await driver.warm(ctx, plan) };
}

/** Waits for the agent's READY; a guest that stops, loses a share or stays silent for too long is an error. */
function agentReady(ctx: RunContext, guest: Guest, { plan, channel }: Attempt, options: Pick<RunOptions, 'bootTimeoutMs' | 'optionNames'>): Promise<unknown> {
  const limitMs = options.bootTimeoutMs;
  const name = (options.optionNames ?? CLI_OPTION_NAMES).bootTimeout;
  return ctx.race<unknown>([
    (signal) => channel.next(signal, 'ready'),
    guestStops(guest, 'vmFailed', 'the VM stopped before the guest agent was ready'),
    after(limitMs, () => guest.error('vmFailed', `the guest showed no sign of life within ${name} ${limitMs / 1000} s`)),
    ...shareLoss(plan.sharing, guest),
  ]);
}

/** Boots the attempt's guest and waits for its agent; with a warm start, saves its state for the next runs (before anything is mounted). */
async function bootGuest(ctx: RunContext, attempt: Attempt, options: Pick<RunOptions, 'bootTimeoutMs' | 'optionNames'>, driver: PreparedRun['driver']): Promise<StartedGuest> {
  ctx.enter('booting the VM');
  const { warm, plan, channel } = attempt;
  const guest = warm ? await warm.boot(ctx) : await driver.boot(ctx, plan);
  await agentReady(ctx, guest, attempt, options);
  if (warm) {
    ctx.enter('saving the booted VM');
    await warm.save(ctx);
  }
  await guest.attach(ctx);
  return { guest, channel, plan, warm: false };
}

/**
 * Stage 3: the guest, its agent ready: restored from the saved state of this VM shape when there is
 * one, else booted (and saved). A state that does not restore never fails the run: that attempt is
 * undone and the guest boots, saving the state anew.
 */
async function startGuest(ctx: RunContext, options: Pick<RunOptions, 'bootTimeoutMs' | 'optionNames'>, prepared: PreparedRun, command: GuestCommand, base: BasePlan): Promise<StartedGuest> {
  const first = ctx.attempt();
  try {
    const attempt = await setUpAttempt(first, prepared, command, base);
    if (!attempt.warm?.restorable) {
      const booted = await bootGuest(first, attempt, options, prepared.driver);
      first.keep();
      return booted;
    }
    ctx.enter('restoring the saved VM');
    const { channel } = attempt;
    /** A restored agent answers READY to a PING (sent once QEMU connects the port). */
    const answered = async (signal: AbortSignal) => {
      void channel.send('PING\n');
      await channel.next(signal, 'ready');
    };
    const restored = await attempt.warm.restore(first, answered);
    if ('guest' in restored) {
      await restored.guest.attach(first);
      first.keep();
      return { guest: restored.guest, channel, plan: attempt.plan, warm: true };
    }
    ctx.notice(restored.failed);
  } catch (error) {
    first.keep(); // undone with the run
    throw error;
  }
  await first.cleanup.unwind();
  return bootGuest(ctx, await setUpAttempt(ctx, prepared, command, base), options, prepared.driver);
}

/** Stage 4: the request, the command's output and status. */
async function speak(ctx: RunContext, options: RunIo & Pick<VmOptions, 'network'>, started: StartedGuest, command: GuestCommand, run: { runDir: string; ssh?: SshSetup }): Promise<Extract<GuestMessage, { type: 'exit' }>> {
  ctx.enter('running the command');
  const { guest, channel, plan } = started;
  const env = {
    LANG: 'C.UTF-8',
    ...guestNetworkEnvironment(networkOf(options)),
    ...(options.terminal && process.env.TERM ? { TERM: process.env.TERM } : {}), // what the lent terminal is
    ...command.env,
  };
  const use = options.terminal;
  const lend = use && terminalLender(ctx, use.host, { resized: (size) => void channel.send(encodeWindowSize(size)), escaped: ctx.escape });
  if (use?.debugShell && lend) {
    void channel.next(ctx.background(), 'shell').then(
      async ({ status }) => {
        // Shown even with --quiet: the terminal now belongs to a shell in the guest.
        options.stderr.write(`boxbuild: the command failed with exit status ${status}; here is a shell in its VM, with the shares mounted (exit ends the run)\n`);
        lend(await channel.input());
      },
      () => {}, // the run ended first, or the guest broke the protocol (the run's own wait reports it)
    );
  }
  const terminal = use && { ...windowSize(use.host), command: use.tty, debugShell: use.debugShell };
  const request: GuestRequest = { mounts: plan.sharing.mounts, cwd: command.cwd, env, argv: command.argv, stdin: options.stdin !== undefined, terminal };
  // The ports carry a debug shell's input and output on the SSH channel too.
  channel.pipeOutput(options.stdout, options.stderr);
  const lost = guestStops(guest, 'guestLost', "the guest stopped without reporting the build's exit status");
  const failures: Array<Racer<never>> = [lost, ...shareLoss(plan.sharing, guest)];
  let session: Promise<ChildEnd> | undefined;
  if (run.ssh) {
    // SSH channel: mounts and sshd over the control port, the command over SSH, the status back on the control port.
    await channel.send(encodeSshdRequest(request, run.ssh.authorizedKey, started.warm));
    const hello = await ctx.race<Extract<GuestMessage, { type: 'hostkey' | 'error' }>>([(signal) => channel.next(signal, 'hostkey', 'error'), lost]);
    if (hello.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${hello.message}`);
    const keys = terminal?.command ? new PassThrough() : undefined;
    if (keys && lend) lend(keys);
    const io = { stdin: keys ?? options.stdin, stdout: options.stdout, stderr: options.stderr };
    const ended = (session = (await startSshSession(run.ssh, run.runDir, hello.key, encodeCommand(request), io)).ended);
    failures.push(async (signal) => {
      const done = await waitFor(ended, signal);
      await sleep(SSH_STATUS_GRACE_MS, undefined, { signal }); // the status may still be on its way
      throw new BoxbuildError('vmFailed', `the SSH session to the guest ended without a result (ssh exited with ${done.exitCode})`);
    });
  } else {
    if (terminal?.command && lend) lend(await ctx.wait(channel.input()));
    else if (options.stdin) channel.pipeInput(options.stdin);
    await channel.send(encodeRequest(request, started.warm));
  }
  const result = await ctx.race<Extract<GuestMessage, { type: 'exit' | 'error' }>>([(signal) => channel.next(signal, 'exit', 'error'), ...failures]);
  if (result.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${result.message}`);
  // Output still queued in the guest would be lost with the VM: it powers off once told all of it arrived.
  await ctx.race([(signal) => channel.outputPassedOn(result.output, signal), lost]);
  await channel.send('DONE\n');
  if (session) await ctx.wait(session); // every byte of the session's output has been passed on
  return result;
}

/** Stage 5: the guest powers off (or is stopped: a disposable one at once), every byte of its output passed on. */
async function collect(ctx: RunContext, { guest, channel }: StartedGuest): Promise<void> {
  ctx.enter('stopping the VM');
  // The build's status and output are in: an abort from here on only stops the VM sooner.
  if (guest.disposable) await guest.stop();
  else await ctx.race([(signal) => waitFor(guest.exited, signal), after(POWEROFF_GRACE_MS, () => new Error('poweroff timeout'))]).catch(() => guest.stop());
  await channel.drained();
}

/** Runs the command in a fresh VM of an installed box (or of what passes for one: a booted image), in a scope of `ctx`. */
export function runOnBox(ctx: RunContext, options: RunOptions, box: BoxEntry, installed: InstalledBox, command: GuestCommand, makeDriver?: DriverFactory): Promise<number> {
  return ctx.scope(async (ctx) => {
    const startedAt = new Date();
    const arch = installed.manifest.arch;
    const profile = PROFILES[arch];
    const kernel = join(installed.dir, installed.manifest.files.kernel.name);
    const coldBecause = options.cold ? '--cold' : options.boxDebug ? '--box-debug shows the boot' : undefined;
    const prepared = await prepareRun(ctx, options, { box, installed, kernel, coldBecause }, makeDriver);
    const ssh = options.channel === 'ssh' ? await prepareSsh(prepared.runDir) : undefined;
    const base: BasePlan = {
      kernel,
      initrd: join(installed.dir, installed.manifest.files.initrd.name),
      cmdline: kernelCmdline(box, arch, { profile, console: consoleDevice(options, box), accel: prepared.provenance.accelerator }, options.boxDebug),
      disks: options.extraDisks ?? [],
      consoleEcho: options.boxDebug ? options.stderr : undefined,
      sshPort: ssh?.port,
    };
    const started = await startGuest(ctx, options, prepared, command, base);
    const timing = (what: string) => ctx.detail(`timing: ${what} ${((Date.now() - started.guest.startedAt) / 1000).toFixed(2)} s after QEMU started`);
    timing(started.warm ? 'guest agent ready (restored)' : 'guest agent ready');
    reportStarted(options, prepared.provenance, started.warm);
    const result = await speak(ctx, options, started, command, { runDir: prepared.runDir, ssh });
    timing('command finished');
    await collect(ctx, started);
    timing('VM stopped');
    const facts = { argv: command.argv, exitCode: result.status, startedAt, endedAt: new Date(), warm: started.warm };
    if (command.targetDir) await writeProvenance(command.targetDir, prepared.provenance, facts);
    return result.status;
  });
}

/**
 * Boots a fresh VM of the box, mounts the shares, runs the command with its output streamed, and
 * returns the command's exit status. Everything is undone on every path.
 */
export async function runInBox(options: RunOptions, makeCommand: (box: BoxEntry) => GuestCommand): Promise<number> {
  const { box, arch } = lookupBox(options);
  if (box.protocol !== 'boxbuild') throw usageError(`box "${box.name}" follows the KIWI box contract: it runs kiwi builds (boxbuild --box ${box.name} -- --description D --target-dir T), not commands`);
  const command = makeCommand(box);
  if (options.container) {
    const { agentContainerCommand, runInContainer } = await import('./container.js');
    return runInContainer(options, box, arch, agentContainerCommand(box, command));
  }
  return inRun(options, async (ctx) => runOnBox(ctx, options, box, await resolveBox(ctx, options, box, arch), command));
}

/** How boxes are made: a script in a VM of the `debian` box with a disk attached (src/box gets it as BoxRequest.runScript). */
export const runDiskScript: DiskScriptRunner = ({ arch, cacheRoot, disk, format = 'raw', readOnly, script, shares, output, errors = output, log, signal }) =>
  runInBox(
    {
      box: 'debian',
      arch,
      cacheRoot,
      accel: 'auto',
      sharing: '9p',
      memoryMiB: 2048,
      cpus: 2,
      cold: true,
      bootTimeoutMs: 120_000,
      timeoutMs: 4 * 3_600_000,
      stdout: output,
      stderr: errors,
      notice: log,
      signal,
      extraDisks: [{ path: disk, format, cache: 'unsafe', readOnly }],
    },
    () => ({ shares, argv: ['sh', '-c', script], cwd: '/' }),
  );
