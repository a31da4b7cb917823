import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArch } from '../box/arch.js';
import { usageError } from '../errors.js';
import { parseHostSpec } from '../driver/remote/host.js';
import { parseNetwork } from '../network/mode.js';
import { parseDurationMs, parseMemoryMiB, parsePositiveInt } from '../util/size.js';
import { distrust } from './trust.js';

/*
 * Defaults a user or a project sets once: `$XDG_CONFIG_HOME/boxbuild/config.json` (the user's) and
 * `.boxbuild.json` in the current directory or the nearest one above it (the project's). The command
 * line wins over the project, the project over the user. A file someone else could have put there
 * is skipped (see trust.ts), and so is a registry file it names.
 */

/** A setting: the command-line option it stands for, and how its value is checked. */
interface Setting {
  option: string;
  /** The option's key in commander's values. */
  key: string;
  check: (value: unknown, where: string) => unknown;
}

const text = (check?: (value: string, where: string) => unknown) => (value: unknown, where: string) => {
  if (typeof value !== 'string') throw usageError(`${where}: expected a string, got ${JSON.stringify(value)}`);
  check?.(value, where);
  return value;
};
const oneOf = (...choices: string[]) => text((value, where) => {
  if (!choices.includes(value)) throw usageError(`${where}: "${value}" is not one of ${choices.join(', ')}`);
});

export const SETTINGS: Record<string, Setting> = {
  box: { option: '--box', key: 'box', check: text() },
  arch: { option: '--arch', key: 'arch', check: text((value) => parseArch(value)) },
  memory: { option: '--box-memory', key: 'boxMemory', check: text((value, where) => parseMemoryMiB(value, where)) },
  cpus: { option: '--box-smp-cpus', key: 'boxSmpCpus', check: text((value, where) => parsePositiveInt(value, where)) },
  accel: { option: '--accel', key: 'accel', check: oneOf('auto', 'kvm', 'tcg') },
  sharing: { option: '--sharing', key: 'sharing', check: oneOf('9p', 'virtiofs', 'sshfs', 'auto') },
  channel: { option: '--channel', key: 'channel', check: oneOf('serial', 'ssh') },
  network: {
    option: '--network',
    key: 'network',
    check: (value, where) => {
      if (typeof value !== 'boolean' && typeof value !== 'string') throw usageError(`${where}: expected "filtered", "full", "none", "allow=HOST:PORT", true or false`);
      return parseNetwork(value, where);
    },
  },
  bootTimeout: { option: '--boot-timeout', key: 'bootTimeout', check: text((value, where) => parseDurationMs(value, where)) },
  timeout: { option: '--timeout', key: 'timeout', check: text((value, where) => parseDurationMs(value, where)) },
  host: { option: '--host', key: 'host', check: text((value, where) => parseHostSpec(value, where)) },
  registries: {
    option: '--boxes',
    key: 'boxes',
    check: (value, where) => {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw usageError(`${where}: expected a list of file names`);
      return value;
    },
  },
};

/** One setting's effective value and where it came from. */
export interface ConfigValue {
  value: unknown;
  /** The file it was read from. */
  from: string;
}

export interface ConfigFiles {
  user?: string;
  project?: string;
  /** Places a config file may be that could not be looked into. */
  unreadable?: SkippedFile[];
}

/** Whether `file` exists; a directory that cannot be looked into goes into `unreadable`. */
function present(file: string, unreadable: SkippedFile[]): boolean {
  try {
    return statSync(file, { throwIfNoEntry: false }) !== undefined;
  } catch (error) {
    unreadable.push({ file, kind: 'config file', reason: `cannot look into its directory (${(error as NodeJS.ErrnoException).code})` });
    return false;
  }
}

/** The user's and the project's config files that exist, seen from `cwd`. */
export function findConfigFiles(cwd: string, env: NodeJS.ProcessEnv = process.env): ConfigFiles {
  const unreadable: SkippedFile[] = [];
  const user = join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'boxbuild', 'config.json');
  let project: string | undefined;
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (present(join(dir, '.boxbuild.json'), unreadable)) {
      project = join(dir, '.boxbuild.json');
      break;
    }
    // Where it cannot look, the nearest project file is unknown: none above is taken for it.
    if (unreadable.length > 0 || dir === dirname(dir)) break;
  }
  return { user: present(user, unreadable) ? user : undefined, project, unreadable };
}

/** Reads and checks one config file: every key known, every value as its option would take it. */
function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw usageError(`${file}: not a JSON file (${(error as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw usageError(`${file}: expected an object of settings`);
  const values: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(parsed)) {
    // Own keys only: `constructor` or `__proto__` are unknown settings, not Object's.
    const setting = Object.hasOwn(SETTINGS, name) ? SETTINGS[name] : undefined;
    if (!setting) throw usageError(`${file}: unknown setting "${name}" (known: ${Object.keys(SETTINGS).join(', ')})`);
    setting.check(value, `${file}: ${name}`);
    // Registry files are named relative to the config file that names them.
    values[name] = name === 'registries' ? (value as string[]).map((path) => resolve(dirname(file), path)) : value;
  }
  return values;
}

/** A file found (or named by a config file) that was not read, and why. */
export interface SkippedFile {
  file: string;
  kind: 'config file' | 'box registry';
  /** The config file that names a registry. */
  namedBy?: string;
  reason: string;
}

export interface Config {
  /** Each setting's effective value, the project's over the user's. */
  settings: Record<string, ConfigValue>;
  skipped: SkippedFile[];
}

/** One line saying which file was skipped and why (a notice; boxbuild config). */
export const describeSkipped = (skipped: SkippedFile) =>
  `skipped ${skipped.kind} ${skipped.file}${skipped.namedBy ? ` (named by ${skipped.namedBy})` : ''}: ${skipped.reason}`;

/** The registry files a config file names that may be read; the others go into `skipped`. */
function trustedRegistries(registries: string[], namedBy: string, skipped: SkippedFile[], uid?: number): string[] {
  return registries.filter((file) => {
    const reason = distrust(file, uid);
    if (reason) skipped.push({ file, kind: 'box registry', namedBy, reason });
    return !reason;
  });
}

/** The effective settings of the config files that may be read; the others skipped. */
export function loadConfig(files: ConfigFiles, uid?: number): Config {
  const settings: Record<string, ConfigValue> = {};
  const skipped: SkippedFile[] = [...(files.unreadable ?? [])];
  for (const file of [files.user, files.project]) {
    if (!file) continue;
    const reason = distrust(file, uid);
    if (reason) {
      skipped.push({ file, kind: 'config file', reason });
      continue;
    }
    for (const [name, value] of Object.entries(readConfigFile(file))) {
      settings[name] = { value: name === 'registries' ? trustedRegistries(value as string[], file, skipped, uid) : value, from: file };
    }
  }
  return { settings, skipped };
}
