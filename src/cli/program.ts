import { Command, CommanderError, Option } from 'commander';
import { type Arch, parseArch } from '../box/arch.js';
import { cacheRoot, openCache } from '../box/cache.js';
import { openBuildLog } from '../box/logs.js';
import { ExitCode, usageError } from '../errors.js';
import { parseDurationMs, parsePositiveInt } from '../util/size.js';
import { parseEnvSpecs, parseShareSpec, splitAtDoubleDash } from '../runner/args.js';
import { buildCommand, execCommand } from '../runner/commands.js';
import type { RunOptions } from '../runner/options.js';
import type { AccelRequest } from '../qemu/accel.js';
import type { SharingChoice } from '../sharing/index.js';
import { VERSION } from '../version.js';
import { addBoxCommands } from './box.js';
import { SETTINGS, describeSkipped, findConfigFiles, loadConfig } from '../config/config.js';
import { parseNetwork } from '../network/mode.js';
import { addCompletionCommand, shownCommands } from './completion.js';
import { addConfigCommand } from './config.js';
import { addDoctorCommand } from './doctor.js';
import { addRemoteServeCommand, runOnHost } from './remote.js';
import { addMatrixCommand } from './matrix.js';
import { addWorkerCommand } from './worker.js';
import { ResultFile, resultArgument } from './result.js';
import { type KiwiFlags, addKiwiOptions, kiwiRequest, refuseKiwiOnly } from './kiwi.js';
import { collect, guestMemoryMiB, notice, registryFiles } from './common.js';
import { hostTerminal } from '../runner/terminal.js';
import { closest } from '../util/closest.js';


interface VmFlags {
  box?: string;
  arch?: string;
  x86_64?: boolean;
  aarch64?: boolean;
  boxes?: string[];
  boxMemory?: string;
  boxSmpCpus?: string;
  /** false: --no-accel. */
  accel: AccelRequest | false;
  machine?: string;
  cpu?: string;
  boxConsole?: string;
  bootTimeout: string;
  timeout?: string;
  boxDebug?: boolean;
  sharing: SharingChoice;
  virtiofsd?: string;
  quiet?: boolean;
  verbose?: boolean;
  updateCheck: boolean;
  snapshot: boolean;
  channel: 'serial' | 'ssh';
  cold?: boolean;
  /** --network words (the last mode given wins over the config's), or false: --no-network. */
  network: string | string[] | boolean;
  env?: string[];
  result?: string;
  debugShell?: boolean;
  container?: boolean;
}

/** exec's and shell's own options. */
interface ExecFlags extends VmFlags {
  share?: string[];
  image?: string;
  tty?: boolean;
}

function chosenArch(flags: Pick<VmFlags, 'arch' | 'x86_64' | 'aarch64'>): Arch | undefined {
  const given = [flags.arch && parseArch(flags.arch), flags.x86_64 && 'x86_64', flags.aarch64 && 'aarch64'].filter(Boolean);
  if (new Set(given).size > 1) throw usageError(`conflicting architectures: ${given.join(' and ')}`);
  return (given[0] as Arch | undefined) ?? undefined;
}

/** The names other tools give two options (docker run's): each sets the option it stands for. */
const ALIASES = { memory: 'boxMemory', cpus: 'boxSmpCpus' };

function addVmOptions(command: Command): Command {
  for (const [alias, key] of Object.entries(ALIASES)) command.on(`option:${alias}`, (value: string) => command.setOptionValueWithSource(key, value, 'cli'));
  return command
    .option('--box <name>', 'the box to boot (see "boxbuild box list")')
    .option('--arch <arch>', 'guest architecture: x86_64 or aarch64 (default: the host\'s)')
    .option('--x86_64', 'same as --arch x86_64')
    .option('--aarch64', 'same as --arch aarch64')
    .option('--boxes <file>', 'an extra box registry file (may be repeated)', collect)
    .option('--no-update-check', "use a cached box as it is: don't ask its server for a new version")
    .option('--box-memory <size>', 'guest memory: 2G, 512M; a bare number means GiB (default: the box\'s)')
    .option('--memory <size>', 'same as --box-memory')
    .option('--box-smp-cpus <n>', 'number of guest CPUs (default: the box\'s)')
    .option('--cpus <n>', 'same as --box-smp-cpus')
    .addOption(new Option('--accel <accel>', 'accelerator; auto probes that KVM really works').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--no-accel', 'same as --accel tcg')
    .option('--machine <type>', "QEMU machine type instead of the architecture's default")
    .option('--cpu <model>', "QEMU CPU model instead of the architecture's default")
    .option('--box-console <name>', "kernel console: hvc0, or the machine's serial port for anything else (default: the box's)")
    .option('--boot-timeout <duration>', 'give up when the guest is not ready after this long (90, 90s, 2m)', '60s')
    .option('--timeout <duration>', 'kill the VM when the whole run takes longer (90s, 30m, 2h)')
    .option('--box-debug', 'show the guest console on stderr')
    .option('--container', "run in a podman container of the box's root file system instead of a VM (system boxes, imported root file systems; see README: VM or container)")
    .addOption(new Option('--channel <channel>', 'how the command travels: virtio-serial ports, or SSH (boxes with sshd)').choices(['serial', 'ssh']).default('serial'))
    .option('-e, --env <name[=value]>', "set a variable in the guest's environment; NAME alone passes the host's value (may be repeated)", collect)
    .option('--result <file>', 'write how the run ended (exit status or error, box, accelerator, times) to FILE as JSON')
    .option('--debug-shell', 'when the command fails, open a shell in its VM, shares mounted, on this terminal; exit ends the run')
    .option('--network <mode>', 'what the guest reaches: filtered (the internet through boxbuild\'s proxy, nothing of the host), full (also the host\'s loopback), none; allow=HOST:PORT opens one host port (may be repeated)', collectNetwork, 'filtered')
    .option('--no-network', 'same as --network none (hermetic builds)')
    .option('--cold', 'boot the box even when a saved, booted state of it exists (warm start is the default)')
    .option('--no-snapshot', "system boxes: write to the cached disk instead of a throwaway overlay (keeps e.g. a package cache)")
    .addOption(new Option('--9p-sharing', 'share directories over 9p (the default)').implies({ sharing: '9p' }))
    .addOption(new Option('--virtiofs-sharing', 'share directories over virtiofs').implies({ sharing: 'virtiofs' }))
    .addOption(new Option('--sshfs-sharing', 'share directories over sshfs (sftp-server on a virtio-serial port)').implies({ sharing: 'sshfs' }))
    .addOption(new Option('--sharing <backend>', 'sharing backend; auto picks virtiofs when usable, else 9p').choices(['9p', 'virtiofs', 'sshfs', 'auto']).default('9p'))
    .option('--virtiofsd <path>', 'the virtiofsd to use (default: found on PATH or in the usual places)')
    .option('-q, --quiet', 'print no notices (errors are still printed)')
    .option('-v, --verbose', 'also print how long each phase took');
}

const guestEnv = (flags: Pick<VmFlags, 'env'>) => parseEnvSpecs(flags.env ?? [], process.env);

/**
 * How the run uses the user's terminal: the command runs on a guest terminal (`tty`), a shell follows
 * a failed command (--debug-shell). Both need boxbuild's stdin to be a terminal.
 */
function terminalUse(flags: Pick<VmFlags, 'debugShell'>, tty: boolean): RunOptions['terminal'] {
  if (!tty && !flags.debugShell) return undefined;
  const host = hostTerminal();
  if (!host) throw usageError(`${tty ? '-t' : '--debug-shell'} needs a terminal: boxbuild's stdin is not one`);
  return { host, tty, debugShell: flags.debugShell ?? false };
}

/** The guest's login shell: bash where the box has it, else sh (boxbuild shell). */
const LOGIN_SHELL = ['/bin/sh', '-c', '[ -x /bin/bash ] && exec /bin/bash -l; exec /bin/sh -l'];

/** The box to boot: --box, which every run but `exec --image` needs. */
function chosenBox(flags: VmFlags): string {
  if (!flags.box) throw usageError('missing --box NAME (see "boxbuild box list")');
  return flags.box;
}

/** --network's words: given on the command line, they replace the config's value. */
const collectNetwork = (value: string, previous: unknown) => [...(Array.isArray(previous) ? (previous as string[]) : []), value];

function runOptions(flags: VmFlags, signal: AbortSignal, box = chosenBox(flags)): RunOptions {
  const network = parseNetwork(flags.network);
  if (network.mode === 'none' && flags.channel === 'ssh') throw usageError('--channel ssh reaches the guest over its network: it cannot go with --no-network (--network none)');
  return {
    box,
    arch: chosenArch(flags),
    registryFiles: registryFiles(flags),
    cacheRoot: openCache(cacheRoot()),
    accel: flags.accel === false ? 'tcg' : flags.accel,
    machine: flags.machine,
    cpu: flags.cpu,
    console: flags.boxConsole,
    memoryMiB: flags.boxMemory === undefined ? undefined : guestMemoryMiB(flags.boxMemory),
    cpus: flags.boxSmpCpus === undefined ? undefined : parsePositiveInt(flags.boxSmpCpus, '--box-smp-cpus'),
    sharing: flags.sharing,
    virtiofsd: flags.virtiofsd,
    bootTimeoutMs: parseDurationMs(flags.bootTimeout, '--boot-timeout'),
    timeoutMs: flags.timeout === undefined ? undefined : parseDurationMs(flags.timeout, '--timeout'),
    boxDebug: flags.boxDebug,
    verbose: flags.verbose,
    stdout: process.stdout,
    stderr: process.stderr,
    notice: notice(flags.quiet),
    snapshot: flags.snapshot,
    channel: flags.channel,
    network,
    cold: flags.cold,
    container: flags.container,
    boxFetch: { updateCheck: flags.updateCheck, progress: flags.quiet ? undefined : process.stderr },
    signal,
  };
}

/** The options that only a VM has, by the attribute that holds each. */
const VM_ONLY = ['accel', 'machine', 'cpu', 'boxConsole', 'sharing', 'virtiofsd', 'channel', 'cold', 'snapshot', 'boxDebug', 'bootTimeout', 'debugShell'];

/** Refuses options given on the command line that only a VM has, when the run is in a container. */
function refuseVmOnly(flags: VmFlags, command: Command): void {
  if (!flags.container) return;
  const given = VM_ONLY.filter((key) => ['cli', 'implied'].includes(command.getOptionValueSource(key) ?? ''));
  const names = given.map((key) => command.options.find((option) => option.attributeName() === key)!.long!);
  if (names.length > 0) throw usageError(`${names.join(', ')}: only for a VM, not with --container`);
}

/** A build in either kind of box; its output also goes into the log of past builds. */
async function runBuild(options: RunOptions, flags: VmFlags & KiwiFlags, build: string[], argv: string[]): Promise<number> {
  const { box, arch } = (await import('../runner/stages.js')).lookupBox(options);
  if (box.protocol !== 'kiwi') refuseKiwiOnly(flags, box);
  if (box.protocol === 'kiwi' && flags.env) throw usageError(`--env: box "${box.name}" follows the KIWI box contract, which takes no environment`);
  const log = await openBuildLog(options.cacheRoot, { box: box.name, arch, argv }, options.notice);
  const logged = { ...options, stdout: log.tee(process.stdout), stderr: log.tee(process.stderr) };
  try {
    let code: number;
    if (box.protocol === 'kiwi') {
      const { runKiwiBox } = await import('../runner/kiwi.js');
      code = await runKiwiBox({ ...logged, terminal: terminalUse(flags, false) }, box, arch, kiwiRequest(flags, build, options.notice));
    } else {
      const { runInBox } = await import('../runner/agent.js');
      code = await runInBox({ ...logged, terminal: terminalUse(flags, false) }, () => ({ ...buildCommand(box, build), env: guestEnv(flags) }));
      if (code !== 0) options.notice(`the build failed with exit status ${code}${log.kept ? `; its output is kept in ${log.path}` : ''}`);
    }
    await log.close(`exit status ${code}`);
    return code;
  } catch (error) {
    await log.close(`boxbuild: error: ${(error as Error).message}`);
    throw error;
  }
}

/** Parses boxbuild's command line and runs it; resolves with the exit status. */
export async function commandLine(argv: string[], signal: AbortSignal): Promise<number> {
  const { own, build } = splitAtDoubleDash(argv);
  const buildOption = own.find((arg) => /^--(description|target-dir)(=|$)/.test(arg));
  if (buildOption) throw usageError(`${buildOption.replace(/=.*/s, '')} is a build argument: put build arguments after -- (boxbuild --box NAME -- --description DIR --target-dir DIR)`);
  let status = 0;
  // commander's own errors (unknown option, missing value, its suggestions) as one boxbuild error line.
  const root = new Command('boxbuild').configureOutput({
    outputError: (text, write) => write(`boxbuild: error: ${text.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')}\n`),
  });
  const program = addKiwiOptions(addVmOptions(root))
    .option('--host <[user@]host[:port]>', 'run the build on this host over SSH (it needs the same boxbuild): the description goes there, the output and the target directory come back')
    .option('--no-host', 'build on this host (over a config file\'s host)')
    .description('Run a build inside a throwaway virtual machine: boxbuild --box NAME -- --description DIR --target-dir DIR [build args]')
    .version(VERSION)
    .addHelpText(
      'after',
      `
Examples:
  boxbuild --box debian -- --description examples/hello --target-dir out
  boxbuild --box debian-kiwi --type oem -- --description examples/debian-kiwi --target-dir out
  boxbuild exec --box debian-system --share . -- make -j2
  echo hi | boxbuild exec --box debian --aarch64 -- cat
  boxbuild exec --image out/debian-bookworm.x86_64-12.0.0-0.qcow2 -- cat /etc/os-release
  boxbuild matrix nightly.yaml --results /srv/www/nightly
  boxbuild box list; boxbuild doctor; boxbuild config`,
    )
    .enablePositionalOptions()
    .exitOverride()
    .action(async (flags: VmFlags & KiwiFlags & { host?: string | false }, command: Command) => {
      if (flags.listBoxes) return (await import('./box-actions.js')).listBoxes(flags);
      const result = new ResultFile(flags.result, argv, notice(flags.quiet));
      status = await result.record(async () => {
        refuseVmOnly(flags, command);
        if (!build) throw usageError('missing "--": put the build arguments after it (-- --description DIR --target-dir DIR)');
        if (flags.host) return runOnHost(program, { ...flags, host: flags.host }, own, build, config, signal);
        const options = { ...runOptions(flags, signal), packageCache: flags.cache, onStarted: result.started };
        return runBuild(options, flags, build, argv);
      });
    });

  /** exec and shell: a command in a fresh VM of a box or of an image; stdin is forwarded, or a terminal lent (-t). */
  const execute = async (flags: ExecFlags, options: Command, command: string[], tty: boolean) => {
    const guestCommand = () => ({ ...execCommand((flags.share ?? []).map(parseShareSpec), command, process.cwd()), env: guestEnv(flags) });
    const result = new ResultFile(flags.result, argv, notice(flags.quiet));
    try {
      status = await result.record(async () => {
        refuseVmOnly(flags, options);
        if (flags.container && flags.image !== undefined) throw usageError('--image boots a disk image in a VM: not with --container (import the image as a box first: boxbuild box import)');
        const terminal = terminalUse(flags, tty);
        // The command reads boxbuild's stdin, as `ssh host CMD` does, unless the terminal is lent (to it, or to a debug shell).
        const io = { stdin: terminal ? undefined : process.stdin, terminal, onStarted: result.started };
        if (flags.image === undefined) {
          const { runInBox } = await import('../runner/agent.js');
          return runInBox({ ...runOptions(flags, signal), ...io }, guestCommand);
        }
        if (flags.box) throw usageError('--image and --box: give one of them');
        if (flags.snapshot === false) throw usageError('--image boots the image on a throwaway overlay: --no-snapshot cannot go with it');
        const { runInImage } = await import('../runner/image.js');
        return runInImage({ ...runOptions(flags, signal, ''), ...io }, flags.image, guestCommand());
      });
    } finally {
      process.stdin.destroy(); // released when the run is over
    }
  };
  const addExecOptions = (command: Command) =>
    addVmOptions(command)
      .option('--share <spec>', 'share HOST[:GUEST][:ro] into the guest (may be repeated)', collect)
      .option('--image <file>', 'boot this raw or qcow2 disk image (its own kernel and initrd) on a throwaway overlay instead of a box');

  addExecOptions(program.command('exec'))
    .description('Run any command in a fresh VM of a box, or of a disk image a build made: boxbuild exec --box NAME|--image FILE [--share HOST[:GUEST][:ro]]... [--] CMD [ARGS...]')
    .argument('[command...]', 'the command and its arguments: everything from the first word that is not an option on (or after --)')
    // As docker run takes it: the first word that is not an option starts the command, whose options follow it.
    .passThroughOptions()
    .option('-t, --tty', 'run the command on a terminal in the guest, connected to this one (resizes follow; Enter ~ . ends the run)')
    .addHelpText(
      'after',
      `
Examples:
  boxbuild exec --box debian uname -a
  boxbuild exec --box debian-system --share .:/src -e CC=gcc -- make -C /src
  boxbuild exec --box debian-system -t -- top
  boxbuild exec --box debian --result run.json --timeout 10m -- ./nightly-test`,
    )
    .exitOverride()
    .action(async (words: string[], flags: ExecFlags, options: Command) => {
      // A "--" after the command's first word is the command's own.
      const command = words.length > 0 ? [...words, ...(build ? ['--', ...build] : [])] : (build ?? []);
      if (command.length === 0) throw usageError('missing command (boxbuild exec --box NAME [--] CMD [ARGS...])');
      await execute(flags, options, command, flags.tty ?? false);
    });

  addExecOptions(program.command('shell'))
    .description('Open a shell in a fresh VM of a box or image, on this terminal (or reading commands from stdin): boxbuild shell --box NAME|--image FILE [--share HOST[:GUEST][:ro]]...')
    .addHelpText(
      'after',
      `
The VM is thrown away when the shell exits; its status is boxbuild's. Enter ~ . ends it at once.

Examples:
  boxbuild shell --box debian-system --share .:/src
  boxbuild shell --image out/debian-bookworm.x86_64-12.0.0-0.qcow2
  echo 'uname -m' | boxbuild shell --box debian --aarch64`,
    )
    .exitOverride()
    .action(async (flags: ExecFlags, options: Command) => {
      if (build) throw usageError('shell takes no command: use boxbuild exec -- CMD [ARGS...]');
      await execute(flags, options, LOGIN_SHELL, hostTerminal() !== undefined);
    });

  addBoxCommands(program, signal);
  addDoctorCommand(program, signal, (doctorStatus) => (status = doctorStatus));
  addRemoteServeCommand(program, signal, (serveStatus) => (status = serveStatus));
  addMatrixCommand(program, signal, (matrixStatus) => (status = matrixStatus));
  addWorkerCommand(program, signal, (workerStatus) => (status = workerStatus));
  const config = loadConfig(findConfigFiles(process.cwd()));
  addConfigCommand(program, config);
  addCompletionCommand(program);
  // Config files not read: one notice each, before whichever command runs (boxbuild config lists them itself).
  program.hook('preAction', (_program, command) => {
    if (command.name() !== 'config') config.skipped.forEach((skipped) => notice(command.opts().quiet)(describeSkipped(skipped)));
  });
  // The config files' settings become the defaults of the options they stand for (box list's --boxes too).
  const everyCommand = (command: Command): Command[] => [command, ...command.commands.flatMap(everyCommand)];
  for (const command of everyCommand(program)) {
    for (const [name, { value }] of Object.entries(config.settings)) {
      const { key } = SETTINGS[name]!;
      if (command.options.some((option) => option.attributeName() === key)) command.setOptionValueWithSource(key, value, 'default');
    }
  }

  if (argv.length === 0) {
    program.outputHelp({ error: true });
    return ExitCode.usage;
  }
  const word = own[0];
  if (word === 'help') {
    (program.commands.find((command) => command.name() === own[1]) ?? program).outputHelp();
    return 0;
  }
  const commands = shownCommands(program).map((command) => command.name());
  if (word !== undefined && !word.startsWith('-') && !program.commands.some((command) => command.name() === word) && word !== 'help') {
    const near = closest(word, commands);
    throw usageError(`unknown command "${word}"${near ? ` (did you mean "${near}"?)` : ''}; the commands are ${commands.join(' and ')}; a build runs as boxbuild --box NAME -- BUILD ARGS`);
  }
  try {
    await program.parseAsync(own, { from: 'user' });
  } catch (error) {
    // A command line commander refused (an unknown option) ran nothing, but still gets its --result file.
    if (error instanceof CommanderError && error.exitCode !== 0) await new ResultFile(resultArgument(own), argv, notice()).refused(usageError(error.message.replace(/^error: /, '')));
    throw error;
  }
  return status;
}
