import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Arch, hostArch } from '../box/arch.js';
import type { InstalledBox } from '../box/cache.js';
import { writeProvenance } from '../box/provenance.js';
import type { BoxEntry } from '../box/registry.js';
import { boxImage, containerDisk } from '../driver/container/image.js';
import { containerNetwork } from '../driver/container/network.js';
import { type Podman, findPodman } from '../driver/container/podman.js';
import { type ContainerPlan, type Privileges, runContainer } from '../driver/container/run.js';
import { usageError } from '../errors.js';
import { guestFilePath } from '../guest/guest-files.js';
import { networkOf } from '../network/guest.js';
import { egressSocket } from '../qemu/egress-link.js';
import type { Share } from '../sharing/types.js';
import { runDiskScript } from './agent.js';
import type { RunContext } from './context.js';
import type { KiwiPlan } from './kiwi.js';
import { inRun } from './context.js';
import type { GuestCommand, RunOptions } from './options.js';
import { privateRunDir, resolveBox, startEgress } from './stages.js';

/*
 * A run in a podman container instead of a VM (--container): the same stages (the box, the run's
 * private directory and egress proxy), then the box's image (made once per box version) and one
 * container with the shares bind-mounted. What a VM isolates and a container does not is in the
 * README (VM or container).
 */

/** What a container run is, besides the command: a build's or a kiwi build's privileges, and boxbuild's files it mounts. */
export interface ContainerCommand extends GuestCommand {
  privileges: Privileges;
  /** boxbuild's files the command needs in the container (read-only), by guest path. */
  files: Record<string, string>;
}

/** A command of a box of boxbuild's protocol: its build program comes from this boxbuild, as a VM's does. */
export function agentContainerCommand(box: BoxEntry, command: GuestCommand): ContainerCommand {
  return { ...command, privileges: 'build', files: box.buildProgram ? { [box.buildProgram]: guestFilePath('build') } : {} };
}

/**
 * A KIWI box's build: the box contract's build without its VM (src/guest/files/kiwi-container).
 * kiwi's cache (/var/cache/kiwi) is shared by the box's container builds, as in KIWI's container mode.
 */
export async function kiwiContainerCommand({ shares, targetDir, words }: KiwiPlan, where: { cacheRoot: string; box: string; arch: Arch }): Promise<ContainerCommand> {
  const program = '/usr/lib/boxbuild/kiwi-container';
  const kiwiCache = join(where.cacheRoot, 'kiwi-cache', `${where.box}-${where.arch}`);
  await mkdir(kiwiCache, { recursive: true, mode: 0o700 });
  return {
    shares: [...shares, { tag: 'kiwicache', hostPath: kiwiCache, guestPath: '/var/cache/kiwi', readOnly: false }],
    targetDir,
    argv: [program, ...words],
    cwd: '/',
    privileges: 'kiwi',
    files: { [program]: guestFilePath('kiwi-container'), '/etc/kiwi.yml': guestFilePath('kiwi.yml') },
  };
}

/** Runs `command` in a container of the box; resolves with its exit status. */
export function runInContainer(options: RunOptions, box: BoxEntry, arch: Arch, command: ContainerCommand): Promise<number> {
  if (arch !== hostArch()) throw usageError(`--container runs the host's architecture (${hostArch()}) only: ${arch} builds run in a VM (without --container)`);
  if (options.terminal?.debugShell) throw usageError('--debug-shell opens a shell in the VM of a failed build: not with --container');
  return inRun(options, async (ctx) => {
    const installed = await resolveBox(ctx, options, box, arch);
    const disk = containerDisk(box, installed);
    ctx.enter('finding podman');
    const podman = await findPodman(ctx.signal);
    if (command.privileges === 'kiwi') {
      if (podman.rootless) throw usageError('--container: kiwi builds need loop devices and CAP_SYS_ADMIN on the host, so podman must run as root (sudo boxbuild …), as in KIWI\'s container mode; or build in a VM (without --container)');
      ctx.notice('--container: kiwi runs as root with CAP_SYS_ADMIN, CAP_MKNOD, AUDIT_* and the host\'s /dev, as in KIWI\'s container mode: a VM isolates the build, this container does not');
    }
    ctx.enter('making the container image');
    const image = await boxImage({ podman, installed, disk, cacheRoot: options.cacheRoot, runScript: runDiskScript, notice: options.notice, signal: ctx.signal });
    return runPlanned(ctx, options, podman, installed, image, command);
  });
}

async function runPlanned(ctx: RunContext, options: RunOptions, podman: Podman, installed: InstalledBox, image: string, command: ContainerCommand): Promise<number> {
  ctx.enter('preparing the container');
  const startedAt = new Date();
  const runDir = await privateRunDir(ctx, 'boxbuild-');
  const choice = networkOf(options);
  const egress = choice.mode === 'filtered' ? await startEgress(ctx, options, runDir) : undefined;
  const network = containerNetwork(choice, egress && egressSocket(runDir));
  const files: Share[] = Object.entries(command.files).map(([guestPath, hostPath], index) => ({ tag: `file${index}`, hostPath, guestPath, readOnly: true }));
  const tty = options.terminal?.tty ?? false;
  const plan: ContainerPlan = {
    image,
    argv: command.argv,
    cwd: command.cwd,
    mounts: [...command.shares, ...files],
    environment: { LANG: 'C.UTF-8', ...network.environment, ...(tty && process.env.TERM ? { TERM: process.env.TERM } : {}), ...command.env },
    network,
    privileges: command.privileges,
    memoryMiB: options.memoryMiB,
    cpus: options.cpus,
    stdin: tty ? undefined : options.stdin,
    tty,
    stdout: options.stdout,
    stderr: options.stderr,
    runDir,
  };
  const provenance = { installed, accelerator: 'container', sharing: 'bind' } as const;
  options.onStarted?.({ box: installed.manifest.name, arch: installed.manifest.arch, version: installed.manifest.version, accelerator: provenance.accelerator, sharing: provenance.sharing, warm: false });
  ctx.enter('running the container');
  const status = await runContainer(ctx, podman, plan);
  ctx.detail(`timing: container ended ${((Date.now() - startedAt.getTime()) / 1000).toFixed(2)} s after the run prepared it`);
  if (command.targetDir) await writeProvenance(command.targetDir, provenance, { argv: command.argv, exitCode: status, startedAt, endedAt: new Date(), warm: false });
  return status;
}
