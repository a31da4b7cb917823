import { realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { isWithin } from '../util/file.js';
import { usageError } from '../errors.js';

/** Splits argv at the first `--`: boxbuild's own options before it, the build's arguments after. */
export function splitAtDoubleDash(argv: string[]): { own: string[]; build: string[] | undefined } {
  const index = argv.indexOf('--');
  return index < 0 ? { own: argv, build: undefined } : { own: argv.slice(0, index), build: argv.slice(index + 1) };
}

export interface BuildArgs {
  description: string | undefined;
  targetDir: string | undefined;
  /** Every other build argument, in order. */
  rest: string[];
}

/** Takes `--description D` and `--target-dir T` (also `--opt=value`) out of the build arguments. */
export function parseBuildArgs(args: string[]): BuildArgs {
  const found: Record<'description' | 'target-dir', string | undefined> = { description: undefined, 'target-dir': undefined };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const match = /^--(description|target-dir)(?:=(.*))?$/s.exec(args[i]!);
    if (!match) {
      rest.push(args[i]!);
      continue;
    }
    const name = match[1] as keyof typeof found;
    const value = match[2] ?? args[++i];
    if (value === undefined || value === '') throw usageError(`--${name} needs a directory`);
    if (found[name] !== undefined) throw usageError(`--${name} is given twice`);
    found[name] = value;
  }
  return { description: found.description, targetDir: found['target-dir'], rest };
}

/**
 * The real path of a host path that may not exist yet: the symlinks of its longest existing part
 * resolved, the rest appended as it is (so `link/out` with `link -> desc` is `desc/out`).
 */
export function realPath(path: string): string {
  let existing = resolve(path);
  const missing: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(existing), ...missing);
    } catch {
      if (dirname(existing) === existing) return resolve(path);
      missing.unshift(basename(existing));
      existing = dirname(existing);
    }
  }
}

/** Resolves a host directory that must exist, following symlinks. */
export function existingDirectory(path: string, what: string): string {
  let real: string;
  try {
    real = realpathSync(resolve(path));
  } catch {
    throw usageError(`${what} ${path} does not exist`);
  }
  if (!statSync(real).isDirectory()) throw usageError(`${what} ${path} is not a directory`);
  return real;
}

/** Guest mount points that would hide what the guest itself needs. */
const RESERVED_GUEST_PATHS = ['/proc', '/sys', '/dev', '/bin', '/sbin', '/lib', '/usr', '/etc', '/init'];

export function checkGuestPath(path: string): string {
  if (!isAbsolute(path) || path.split('/').includes('..') || path.includes('\n')) {
    throw usageError(`guest path "${path}" must be absolute, without ".." or line breaks`);
  }
  const normal = resolve(path);
  if (normal === '/' || RESERVED_GUEST_PATHS.some((reserved) => isWithin(normal, reserved))) {
    throw usageError(`guest path "${path}" would hide the guest's own ${normal === '/' ? 'root' : normal} directory`);
  }
  return normal;
}

export interface ShareSpec {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

/** Parses `HOST[:GUEST][:ro|:rw]`; the guest path defaults to the host path. */
export function parseShareSpec(spec: string): ShareSpec {
  const parts = spec.split(':');
  let readOnly = false;
  if (parts.length > 1 && (parts.at(-1) === 'ro' || parts.at(-1) === 'rw')) readOnly = parts.pop() === 'ro';
  if (parts.length > 2 || !parts[0]) throw usageError(`--share "${spec}": expected HOST[:GUEST][:ro]`);
  return shareSpec(parts[0], parts[1] || undefined, readOnly, '--share: host directory');
}

/** A share of an existing host directory (real path) at a guest path (default: the same path). */
export function shareSpec(host: string, guest: string | undefined, readOnly: boolean, what = 'share'): ShareSpec {
  const hostPath = existingDirectory(host, what);
  return { hostPath, guestPath: checkGuestPath(guest ?? hostPath), readOnly };
}

/**
 * `--env` values, as `docker run -e` takes them: `NAME=VALUE`, or `NAME` for the host's value (left
 * out when the host has none). Later ones win.
 */
export function parseEnvSpecs(specs: string[], hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const spec of specs) {
    const equals = spec.indexOf('=');
    const name = equals < 0 ? spec : spec.slice(0, equals);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw usageError(`--env ${spec}: "${name}" is not a variable name (letters, digits and _, not starting with a digit)`);
    const value = equals < 0 ? hostEnv[name] : spec.slice(equals + 1);
    if (value !== undefined) env[name] = value;
  }
  return env;
}
