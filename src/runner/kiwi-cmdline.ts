import type { Arch } from '../box/arch.js';
import type { SharingName } from '../sharing/types.js';
import { usageError } from '../errors.js';

/**
 * The KIWI box contract's kernel command line. The published boxes read it like this
 * (run_kiwi in the boxes):
 *   options=$(cut -f2 -d\" /proc/cmdline); kiwi-ng ... ${options} --description /description --target-dir /result
 *   eval export $(tr " " "\n" </proc/cmdline | grep "=_" | sed -e "s@=_@=@" -e "s@_\$@@")
 * So the build arguments are the text between the first two double quotes, split on whitespace
 * with no quote processing, and every word holding "=_" is evaluated by the shell.
 */

/** kiwi's global options, which go in front of `system build`. */
export interface KiwiGlobals {
  debug?: boolean;
  type?: string;
  profiles?: string[];
  kiwiFile?: string;
}

const VALUED_GLOBALS = { '--type': 'type', '--kiwi-file': 'kiwiFile', '--profile': 'profiles' } as const;

/**
 * Takes kiwi's global options out of the build arguments (`--debug`, `--type T`, `--profile P`,
 * `--kiwi-file F`, also `--opt=value`) and merges them with those given before `--`.
 */
export function takeKiwiGlobals(args: string[], given: KiwiGlobals): { globals: KiwiGlobals; rest: string[] } {
  const globals: KiwiGlobals = { ...given, profiles: [...(given.profiles ?? [])] };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--debug') {
      globals.debug = true;
      continue;
    }
    const match = /^(--type|--kiwi-file|--profile)(?:=(.*))?$/s.exec(arg);
    if (!match) {
      rest.push(arg);
      continue;
    }
    const option = match[1] as keyof typeof VALUED_GLOBALS;
    const value = match[2] ?? args[++i];
    if (value === undefined || value === '') throw usageError(`${option} needs a value`);
    const field = VALUED_GLOBALS[option];
    if (field === 'profiles') globals.profiles!.push(value);
    else if (globals[field] !== undefined && globals[field] !== value) throw usageError(`${option} is given twice (${globals[field]} and ${value})`);
    else globals[field] = value;
  }
  return { globals, rest };
}

/**
 * The words the box's kiwi gets: global options (in kiwi's own order: --debug, --type, each
 * --profile once and sorted, --kiwi-file), then `system build` and the other build arguments.
 */
export function kiwiBuildWords(globals: KiwiGlobals, rest: string[]): string[] {
  return [
    ...(globals.debug ? ['--debug'] : []),
    ...(globals.type ? ['--type', globals.type] : []),
    ...[...new Set(globals.profiles ?? [])].sort().flatMap((profile) => ['--profile', profile]),
    ...(globals.kiwiFile ? ['--kiwi-file', globals.kiwiFile] : []),
    'system',
    'build',
    ...rest,
  ];
}

/** Why a build argument cannot travel inside kiwi="…", or undefined when it can. */
function uncarriable(word: string): string | undefined {
  if (word === '') return 'it is empty (the box splits the arguments on spaces, so it would vanish)';
  if (word.includes('"')) return 'it holds a double quote (the box takes the arguments up to the next ")';
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(word)) return 'it holds a space or control character (the box splits the arguments on whitespace)';
  if (word.includes('=_')) return 'it holds "=_" (the box evaluates such words as shell variables)';
  return undefined;
}

/** Refuses build arguments that the box would not receive as they are. */
export function checkKiwiWords(words: string[]): void {
  for (const word of words) {
    const why = uncarriable(word);
    if (why) throw usageError(`the build argument ${JSON.stringify(word)} cannot be passed to a KIWI box: ${why}`);
  }
}

/**
 * Refuses a `name=_value_` value that the box's `eval export` would not keep as it is: only
 * letters (any script), digits and `/ . , : + @ % - _ =` (no "=_") are safe there.
 */
export function checkBoxVariable(option: string, value: string): string {
  if (!/^[\p{L}\p{N}/.,:+@%=_-]+$/u.test(value) || value.includes('=_')) {
    throw usageError(`${option} ${JSON.stringify(value)}: a KIWI box can only be given letters, digits and / . , : + @ % - _ = here (its shell evaluates the value)`);
  }
  return value;
}

/**
 * COMMAND_LINE_SIZE of each architecture's kernel (bytes, including the terminating NUL):
 * x86:     arch/x86/include/asm/setup.h           COMMAND_LINE_SIZE 2048
 * arm64:   arch/arm64/include/uapi/asm/setup.h    COMMAND_LINE_SIZE 2048
 * s390:    arch/s390/include/uapi/asm/setup.h     COMMAND_LINE_SIZE 896 (the long-standing default)
 * powerpc: arch/powerpc/include/uapi/asm/setup.h  COMMAND_LINE_SIZE 2048
 * riscv:   arch/riscv/include/uapi/asm/setup.h    CONFIG_COMMAND_LINE_SIZE (1024 assumed)
 * A longer command line is cut short by the kernel, silently: the end of kiwi="…" would be lost.
 */
export const COMMAND_LINE_SIZE: Record<Arch, number> = { x86_64: 2048, aarch64: 2048, s390x: 896, ppc64le: 2048, riscv64: 1024 };

export interface KiwiCmdlineOptions {
  arch: Arch;
  /** console=…, then the registry's words. */
  base: string;
  words: string[];
  /** `kiwi-no-halt`: the box stays up after the build (--box-debug). */
  noHalt?: boolean;
  kiwiVersion?: string;
  customMount?: string;
  sharing: SharingName;
  /** Environment variables of the box's build (http_proxy, …), passed as name=_value_ words. */
  environment?: Record<string, string>;
}

/** The whole kernel command line of a KIWI box, checked against the architecture's limit. */
export function kiwiCmdline(options: KiwiCmdlineOptions): string {
  // The box takes its arguments from between the first two double quotes of the command line.
  if (options.base.includes('"')) throw usageError(`the box's kernel command line must not hold a double quote: ${options.base}`);
  checkKiwiWords(options.words);
  const cmdline = [
    options.base,
    `kiwi="${options.words.join(' ')}"`,
    ...(options.noHalt ? ['kiwi-no-halt'] : []),
    ...(options.kiwiVersion ? [`kiwi_version=_${checkBoxVariable('--kiwi-version', options.kiwiVersion)}_`] : []),
    ...(options.customMount ? [`custom_mount=_${checkBoxVariable('--shared-path', options.customMount)}_`] : []),
    `sharing_backend=_${options.sharing}_`,
    ...Object.entries(options.environment ?? {}).map(([name, value]) => `${name}=_${checkBoxVariable(name, value)}_`),
  ]
    .filter(Boolean)
    .join(' ');
  const limit = COMMAND_LINE_SIZE[options.arch] - 1;
  const length = Buffer.byteLength(cmdline);
  if (length > limit) {
    throw usageError(`the kernel command line would be ${length} bytes, more than the ${limit} the ${options.arch} kernel takes; pass fewer or shorter build arguments`);
  }
  return cmdline;
}
