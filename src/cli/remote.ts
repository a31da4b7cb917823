import type { Command, Option } from 'commander';
import { type Config, SETTINGS } from '../config/config.js';
import { usageError } from '../errors.js';
import { parseEnvSpecs } from '../runner/args.js';
import { buildDirectories } from '../runner/commands.js';
import { parseDurationMs } from '../util/size.js';
import { notice } from './common.js';

/*
 * --host: the build's command line goes to the build host as it was given, but for what only means
 * something here: --host and --result stay, the --env variables go with this host's values (apart
 * from the command line, see driver/remote/server), and the config files' settings the command line
 * did not override go along (the build host's own config comes after them).
 */

/** Options whose words stay on this host; -e/--env is sent resolved. */
const LOCAL_ONLY = new Set(['host', 'result', 'env']);
/** Config settings that name nothing the build host has (registry files), or this one's (host). */
const LOCAL_SETTINGS = new Set(['registries', 'host']);

/** The command line's words grouped by option, with the option each group sets. */
function optionGroups(command: Command, own: string[]): Array<{ option?: Option; words: string[] }> {
  const groups: Array<{ option?: Option; words: string[] }> = [];
  const takesValue = (option?: Option) => !!option && (option.required || option.optional);
  for (let i = 0; i < own.length; i++) {
    const word = own[i]!;
    if (word.startsWith('--')) {
      const option = command.options.find((candidate) => candidate.long === word.split('=')[0]);
      const words = [word];
      if (takesValue(option) && !word.includes('=') && i + 1 < own.length) words.push(own[++i]!);
      groups.push({ option, words });
    } else if (/^-[^-]/.test(word)) {
      // A cluster of short options (-qv), the last may take the rest or the next word as its value (-eX=1).
      for (let at = 1; at < word.length; at++) {
        const option = command.options.find((candidate) => candidate.short === `-${word[at]}`);
        if (takesValue(option)) {
          groups.push({ option, words: at + 1 < word.length ? [`-${word[at]}`, word.slice(at + 1)] : [`-${word[at]}`, ...(i + 1 < own.length ? [own[++i]!] : [])] });
          break;
        }
        groups.push({ option, words: [`-${word[at]}`] });
      }
    } else groups.push({ words: [word] });
  }
  return groups;
}

/** The settings of the config files the command line left as they were, as options. */
function configOptions(command: Command, config: Config): string[] {
  return Object.entries(config.settings).flatMap(([name, { value }]) => {
    const { option, key } = SETTINGS[name]!;
    if (LOCAL_SETTINGS.has(name) || command.getOptionValueSource(key) === 'cli' || value === true) return [];
    return value === false ? [option.replace(/^--/, '--no-')] : [option, String(value)];
  });
}

/** boxbuild's options for the build host (but --env, see remoteEnv). */
export function remoteOptions(command: Command, own: string[], config: Config): string[] {
  const kept = optionGroups(command, own).filter(({ option }) => !option || !LOCAL_ONLY.has(option.attributeName()));
  return [...configOptions(command, config), ...kept.flatMap(({ words }) => words)];
}

/** The root command with --host: the build on the build host. */
export async function runOnHost(
  command: Command,
  flags: { host: string; env?: string[]; quiet?: boolean; verbose?: boolean; timeout?: string; debugShell?: boolean },
  own: string[],
  build: string[],
  config: Config,
  signal: AbortSignal,
): Promise<number> {
  const { parseHostSpec } = await import('../driver/remote/host.js');
  const host = parseHostSpec(flags.host);
  if (flags.debugShell) throw usageError('--debug-shell needs the VM on this host: it cannot go with --host');
  const { description, targetDir, rest } = buildDirectories(build);
  const { runRemoteBuild } = await import('../driver/remote/client.js');
  return runRemoteBuild(
    {
      stdout: process.stdout,
      stderr: process.stderr,
      notice: notice(flags.quiet),
      verbose: flags.verbose,
      timeoutMs: flags.timeout === undefined ? undefined : parseDurationMs(flags.timeout, '--timeout'),
      signal,
    },
    { host, options: remoteOptions(command, own, config), env: parseEnvSpecs(flags.env ?? [], process.env), description, targetDir, rest },
  );
}

/** `boxbuild remote-serve` (hidden): the build host's end of a --host run, started by its sshd; speaks on stdin and stdout. */
export function addRemoteServeCommand(program: Command, signal: AbortSignal, done: (status: number) => void): void {
  program
    .command('remote-serve', { hidden: true })
    .description('Serve one --host session on stdin and stdout (run by the build host\'s sshd)')
    .exitOverride()
    .action(async () => {
      const { serve } = await import('../driver/remote/server.js');
      try {
        done(await serve(process.stdin, process.stdout, signal));
      } finally {
        process.stdin.destroy(); // what the client may still send is nobody's concern now
      }
    });
}
