import { existsSync, readFileSync } from 'node:fs';
import { BoxbuildError } from '../../errors.js';
import { type ChildEnd, type ChildOptions, lastWords, runChild } from '../../util/child.js';
import { findOnPath } from '../../util/path.js';

/*
 * podman as boxbuild runs it: what works on this host is found out once per run and passed on every
 * command line (never written into the host's podman configuration). The runtime is runc when it is
 * installed (crun fails to set the limits of a container in some sandboxes); the cgroup manager is
 * cgroupfs where systemd does not run; the limits of open files and processes are the ones podman
 * itself may hand on (its defaults are higher than an unprivileged sandbox allows).
 */

export interface Podman {
  /** The podman command and the global options that work here. */
  readonly command: string[];
  /** Rootless podman: the container's root is the calling user on the host. */
  readonly rootless: boolean;
  readonly version: string;
  /** `--ulimit` options for `podman create`. */
  readonly limits: string[];
}

const FIX = 'install podman (Debian: apt-get install --no-install-recommends podman runc), then try again ("boxbuild doctor" checks it)';

/** podman before starting a container lowers its own process limit to this (seen with strace): a container can be given no more. */
const PODMAN_NPROC = 32768;

/** This process's hard limits of open files and processes, from /proc/self/limits. */
function hardLimits(text: string): { nofile?: number; nproc?: number } {
  const hard = (name: string) => {
    const value = new RegExp(`^${name}\\s+\\S+\\s+(\\S+)`, 'm').exec(text)?.[1];
    return value === undefined || value === 'unlimited' ? undefined : Number(value);
  };
  return { nofile: hard('Max open files'), nproc: hard('Max processes') };
}

/** The `--ulimit` options of a container: as high as podman can set them from here. */
export function ulimitOptions(limitsText: string): string[] {
  const { nofile, nproc } = hardLimits(limitsText);
  const processes = Math.min(nproc ?? PODMAN_NPROC, PODMAN_NPROC);
  return [...(nofile ? ['--ulimit', `nofile=${nofile}:${nofile}`] : []), '--ulimit', `nproc=${processes}:${processes}`];
}

interface PodmanInfo {
  host: { ociRuntime?: { name?: string }; cgroupManager?: string; security?: { rootless?: boolean } };
  version: { Version: string };
}

/** Finds podman and what works with it here; a missing or unusable podman is one error line with its fix (exit 69). */
export async function findPodman(signal?: AbortSignal): Promise<Podman> {
  const file = findOnPath('podman');
  if (!file) throw new BoxbuildError('containerUnavailable', `--container needs podman, which is not installed: ${FIX}`);
  const globals: string[] = [];
  if (findOnPath('runc')) globals.push('--runtime', 'runc');
  if (!existsSync('/run/systemd/system')) globals.push('--cgroup-manager', 'cgroupfs', '--events-backend', 'file');
  const command = [file, ...globals];
  const end = await runChild(command[0]!, [...command.slice(1), 'info', '--format', 'json'], { signal, env: podmanEnvironment() });
  if (end.exitCode !== 0) throw new BoxbuildError('containerUnavailable', `podman cannot run here: ${lastWords(end)}; ${FIX}`);
  const info = JSON.parse(end.stdout) as PodmanInfo;
  return { command, rootless: info.host.security?.rootless ?? process.getuid?.() !== 0, version: info.version.Version, limits: ulimitOptions(readFileSync('/proc/self/limits', 'utf8')) };
}

/**
 * podman's environment: boxbuild's, but for TMPDIR (a run's private one): rootless podman keeps a
 * process of its own running after the command (its user namespace's), which is the user's, not the run's.
 */
export function podmanEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { TMPDIR: _, ...rest } = env;
  return rest;
}

/** podman's file and arguments for `args`, with its options for this host. */
export const podmanArgv = (podman: Podman, args: string[]): [string, string[]] => [podman.command[0]!, [...podman.command.slice(1), ...args]];

/** Runs one podman command to its end. */
export const podmanCommand = (podman: Podman, args: string[], options?: ChildOptions): Promise<ChildEnd> => runChild(...podmanArgv(podman, args), { env: podmanEnvironment(), ...options });

/** Runs one podman command that must succeed; `what` says what it was for in the error. */
export async function podmanMust(podman: Podman, args: string[], what: string, options?: ChildOptions): Promise<string> {
  const end = await podmanCommand(podman, args, options);
  if (end.exitCode !== 0) throw new BoxbuildError('containerUnavailable', `podman could not ${what}: ${lastWords(end)}`);
  return end.stdout.trim();
}
