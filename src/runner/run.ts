import { PassThrough, type Writable } from 'node:stream';
import { writeProvenance } from '../box/provenance.js';
import { type InstalledBox } from '../box/cache.js';
import { type BoxEntry } from '../box/registry.js';
import { BoxbuildError, usageError } from '../errors.js';
import { type RunningVm, describeExit, vmError } from '../qemu/launcher.js';
import { PROFILES } from '../qemu/profiles.js';
import { abortable, deadline, whenAborted } from './deadline.js';
import { guestNetworkEnvironment, networkOf } from './network.js';
import { type TerminalRequest, encodeCommand, encodeRequest, encodeSshdRequest, encodeWindowSize } from './protocol.js';
import { startSshSession } from './ssh-channel.js';
import { type GuestChannel } from './channel.js';
import { type GuestCommand, type RunOptions, type Session, fetchBox, lookupBox, reportStarted, runSignal, sharingLost, teardown } from './session.js';
import { RestoreFailed, startGuest } from './start.js';
import { type LentTerminal, lendTerminal, windowSize } from './terminal.js';

/** How long a guest that reported its result may take to power off before it is stopped. */
const POWEROFF_GRACE_MS = 10_000;

/** How a run uses the user's terminal (options.terminal). */
interface RunTerminal {
  /** What the guest is told about it. */
  request?: TerminalRequest;
  /** Lends the terminal (once), its keys typed into `keys`. */
  typeInto(keys: Writable): void;
  giveBack(): void;
}

/**
 * The user's terminal in a run: lent to the command at once (-t), or to a debug shell when the
 * agent says the command failed (--debug-shell); sizes go to the guest as WINSZ lines.
 */
function useTerminal(options: RunOptions, channel: GuestChannel, escaped: () => void): RunTerminal {
  const use = options.terminal;
  if (!use) return { typeInto: () => {}, giveBack: () => {} };
  let lent: LentTerminal | undefined;
  const typeInto = (keys: Writable) => {
    lent ??= lendTerminal(use.host, { resized: (size) => void channel.send(encodeWindowSize(size)), escaped });
    lent.typeInto(keys);
  };
  if (use.debugShell) {
    void channel.next('shell').then(
      async ({ status }) => {
        // Shown even with --quiet: the terminal now belongs to a shell in the guest.
        options.stderr.write(`boxbuild: the command failed with exit status ${status}; here is a shell in its VM, with the shares mounted (exit ends the run)\n`);
        typeInto(await channel.input());
      },
      () => {}, // a guest that broke the protocol: the run's own wait reports it
    );
  }
  return {
    request: { ...windowSize(use.host), command: use.tty, debugShell: use.debugShell },
    typeInto,
    giveBack: () => lent?.giveBack(),
  };
}

/**
 * Boots a fresh VM of the box, mounts the shares, runs the command with its output streamed,
 * and returns the command's exit status. Everything is torn down on every path.
 */
export async function runInBox(options: RunOptions, makeCommand: (box: BoxEntry) => GuestCommand): Promise<number> {
  const { box, arch } = lookupBox(options);
  if (box.protocol !== 'boxbuild') throw usageError(`box "${box.name}" follows the KIWI box contract: it runs kiwi builds (boxbuild --box ${box.name} -- --description D --target-dir T), not commands`);
  const command = makeCommand(box);
  return runOnBox(options, box, await fetchBox(options, box, arch), command);
}

/** Runs the command in a fresh VM of an installed box (or of what passes for one: a booted image). */
export async function runOnBox(options: RunOptions, box: BoxEntry, installed: InstalledBox, command: GuestCommand): Promise<number> {
  const arch = installed.manifest.arch;
  const startedAt = new Date();
  let session: Session = {};
  // Every wait below gives up when the run's signal aborts; the finally block then stops whatever was started.
  const ending = runSignal(options);
  const { signal } = ending;
  let terminal: RunTerminal | undefined;
  try {
    const start = { options, box, installed, command, profile: PROFILES[arch], signal };
    let started: { vm: RunningVm; warm: boolean };
    try {
      started = await startGuest({ ...start, session });
    } catch (error) {
      if (!(error instanceof RestoreFailed)) throw error;
      await teardown(session);
      session = {};
      started = await startGuest({ ...start, session, restore: false });
    }
    const { vm } = started;
    const timing = (what: string) => options.verbose && options.notice(`timing: ${what} ${((Date.now() - vm.startedAt) / 1000).toFixed(2)} s after QEMU started`);
    const channel = session.channel!;
    timing(started.warm ? 'guest agent ready (restored)' : 'guest agent ready');
    reportStarted(options, session.provenance!, started.warm);
    const lost = vm.exited.then((exit) => {
      throw vmError('guestLost', `the guest stopped without reporting the build's exit status (${describeExit(exit)})`, vm);
    });
    lost.catch(() => {});
    const env = {
      LANG: 'C.UTF-8',
      ...guestNetworkEnvironment(networkOf(options)),
      ...(options.terminal && process.env.TERM ? { TERM: process.env.TERM } : {}), // what the lent terminal is
      ...command.env,
    };
    terminal = useTerminal(options, channel, ending.escape);
    const guestRequest = { mounts: session.sharing!.mounts, cwd: command.cwd, env, argv: command.argv, stdin: options.stdin !== undefined, terminal: terminal.request };
    const onTerminal = terminal.request?.command;
    // The ports carry a debug shell's input and output on the SSH channel too.
    channel.pipeOutput(options.stdout, options.stderr);
    let sshSession: Promise<unknown> | undefined;
    let sshGone: Promise<never> = new Promise(() => {});
    if (session.ssh) {
      // SSH channel: mounts and sshd over the control port, the command over SSH, the status back on the control port.
      await channel.send(encodeSshdRequest(guestRequest, session.ssh.authorizedKey, started.warm));
      const hello = await abortable(Promise.race([channel.next('hostkey', 'error'), lost]), signal);
      if (hello.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${hello.message}`);
      const keys = onTerminal ? new PassThrough() : undefined;
      if (keys) terminal.typeInto(keys);
      const io = { stdin: keys ?? options.stdin, stdout: options.stdout, stderr: options.stderr };
      const { ended } = await startSshSession(session.ssh, session.runDir!, hello.key, encodeCommand(guestRequest), io);
      sshSession = ended;
      sshGone = ended.then(async (done) => {
        await new Promise((resolve) => setTimeout(resolve, 5000).unref()); // the status may still be on its way
        throw new BoxbuildError('vmFailed', `the SSH session to the guest ended without a result (ssh exited with ${done.exitCode})`);
      });
      sshGone.catch(() => {});
    } else {
      if (onTerminal) terminal.typeInto(await channel.input());
      else if (options.stdin) channel.pipeInput(options.stdin);
      await channel.send(encodeRequest(guestRequest, started.warm));
    }
    const result = await abortable(Promise.race([channel.next('exit', 'error'), lost, sshGone, sharingLost(session.sharing!, vm)]), signal);
    if (result.type === 'error') throw new BoxbuildError('vmFailed', `in the guest: ${result.message}`);
    // Output still queued in the guest would be lost with the VM: it powers off once told all of it arrived.
    await abortable(Promise.race([channel.outputPassedOn(result.output), lost]), signal);
    await channel.send('DONE\n');
    await abortable(Promise.resolve(sshSession), signal); // every byte of the session's output has been passed on
    timing('command finished');

    // The build's status and output are in: an abort from here on only stops the VM sooner.
    const poweroff = deadline(POWEROFF_GRACE_MS, () => new Error('poweroff timeout'));
    await Promise.race([vm.exited, poweroff.promise, whenAborted(signal)]).catch(() => vm.stop());
    poweroff.clear();
    await channel.drained();
    timing('VM stopped');
    const facts = { argv: command.argv, exitCode: result.status, startedAt, endedAt: new Date(), warm: started.warm };
    if (command.targetDir) await writeProvenance(command.targetDir, session.provenance!, facts);
    return result.status;
  } finally {
    terminal?.giveBack();
    ending.clear();
    await teardown(session);
  }
}
