import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { BoxbuildError, usageError } from '../../errors.js';
import type { Share } from '../../sharing/types.js';
import { waitFor } from '../../util/abort.js';
import { Child, lastWords } from '../../util/child.js';
import type { DriverContext } from '../types.js';
import { type ContainerNetwork, startRelay } from './network.js';
import { type Podman, podmanArgv, podmanCommand, podmanEnvironment, podmanMust } from './podman.js';

/*
 * One container of a run: created with the run's mounts, network, limits and privileges, started
 * attached (its output streamed, its stdin passed on or the user's terminal lent), its exit status
 * read from podman; removed (killed first when it still runs) on every path.
 */

/** What a container may do: a build's (podman's default capabilities, no new privileges), or a kiwi build's, as KIWI's container mode documents it. */
export type Privileges = 'build' | 'kiwi';

export interface ContainerPlan {
  image: string;
  argv: string[];
  cwd: string;
  /** Bind mounts: the shares, and files of boxbuild's the container needs (read-only). */
  mounts: Share[];
  environment: Record<string, string>;
  network: ContainerNetwork;
  privileges: Privileges;
  memoryMiB?: number;
  cpus?: number;
  /** The command's stdin (none: /dev/null). */
  stdin?: Readable;
  /** The command runs on the user's terminal (podman -t: boxbuild's own stdio). */
  tty?: boolean;
  stdout: Writable;
  stderr: Writable;
  /** A private directory of the run (for the environment file). */
  runDir: string;
}

/** KIWI's container mode: loop devices and device mapper from the host's /dev, and the capabilities its tools need. */
const KIWI_PRIVILEGES = ['--cap-add', 'SYS_ADMIN,MKNOD,AUDIT_WRITE,AUDIT_CONTROL', '--security-opt', 'label=disable', '--mount', 'type=bind,source=/dev,destination=/dev'];

/** A --mount field, quoted as CSV when it must be (podman splits the option at commas). */
const field = (text: string) => (/[,"\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

export const mountOption = (mount: Share) => ['--mount', ['type=bind', field(`source=${mount.hostPath}`), field(`destination=${mount.guestPath}`), ...(mount.readOnly ? ['ro=true'] : [])].join(',')];

/** podman create's command line (the environment is in `envFile`). */
export function createArguments(podman: Pick<Podman, 'limits' | 'rootless'>, plan: ContainerPlan, name: string, envFile: string): string[] {
  const resources = podman.rootless ? [] : [...(plan.memoryMiB ? ['--memory', `${plan.memoryMiB}m`] : []), ...(plan.cpus ? ['--cpus', String(plan.cpus)] : [])];
  return [
    'create',
    '--name', name,
    // Which run it is (its private directory): what a run left can be told apart.
    '--label', `org.boxbuild.run=${plan.runDir}`,
    '--pull', 'never',
    '--log-driver', 'none',
    ...plan.network.options,
    ...podman.limits,
    ...resources,
    '--security-opt', 'no-new-privileges',
    ...(plan.privileges === 'kiwi' ? KIWI_PRIVILEGES : []),
    ...plan.mounts.flatMap(mountOption),
    '--env-file', envFile,
    '--workdir', plan.cwd,
    ...(plan.stdin || plan.tty ? ['--interactive'] : []),
    ...(plan.tty ? ['--tty'] : []),
    plan.image,
    ...plan.argv,
  ];
}

/** podman's environment file: NAME=VALUE lines, which cannot carry a line break. */
function environmentFile(environment: Record<string, string>): string {
  for (const [name, value] of Object.entries(environment)) {
    if (/[\n\0]/.test(name + value)) throw usageError(`--container: the variable ${name.split('\n')[0]} holds a line break, which podman's environment file cannot carry`);
  }
  return Object.entries(environment).map(([name, value]) => `${name}=${value}\n`).join('');
}

/** Runs the container to its end; resolves with the command's exit status. */
export async function runContainer(ctx: DriverContext, podman: Podman, plan: ContainerPlan): Promise<number> {
  const name = `boxbuild-${randomBytes(8).toString('hex')}`;
  const envFile = join(plan.runDir, 'container.env');
  await writeFile(envFile, environmentFile(plan.environment), { mode: 0o600 });
  await podmanMust(podman, createArguments(podman, plan, name, envFile), 'create the container', { signal: ctx.signal });
  ctx.defer(() => podmanCommand(podman, ['rm', '--force', '--time', '0', name]));
  if (plan.network.egressSocket) {
    // The namespaces exist once the container is initialised; the build starts only when its network is there.
    await podmanMust(podman, ['init', name], 'set up the container', { signal: ctx.signal });
    const pid = Number(await podmanMust(podman, ['inspect', '--format', '{{.State.Pid}}', name], 'inspect the container', { signal: ctx.signal }));
    const relay = await startRelay(pid, plan.network.egressSocket, podman.rootless, ctx.signal);
    ctx.defer(() => relay.stop());
  }
  const interactive = plan.stdin || plan.tty ? ['--interactive'] : [];
  const start = new Child(...podmanArgv(podman, ['start', '--attach', ...interactive, name]), {
    stdio: plan.tty ? 'inherit' : [plan.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    signal: ctx.signal,
    env: podmanEnvironment(),
  });
  if (!plan.tty) {
    if (plan.stdin) {
      start.process.stdin!.on('error', () => {}); // the command did not read it all
      plan.stdin.pipe(start.process.stdin!);
    }
    start.process.stdout!.pipe(plan.stdout, { end: false });
    start.process.stderr!.pipe(plan.stderr, { end: false });
  }
  const started = await waitFor(start.ended, ctx.signal);
  const [state, code, oom] = (await podmanMust(podman, ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}', name], 'inspect the container', { signal: ctx.signal })).split(' ');
  if (state !== 'exited') throw new BoxbuildError('vmFailed', `the container did not run: ${lastWords(started)}`);
  if (oom === 'true') ctx.notice(`the container ran out of memory${plan.memoryMiB ? ` (${plan.memoryMiB} MiB; --memory sets more)` : ''}`);
  return Number(code);
}
