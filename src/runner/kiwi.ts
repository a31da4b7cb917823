import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Arch } from '../box/arch.js';
import type { BoxEntry } from '../box/registry.js';
import { writeProvenance } from '../box/provenance.js';
import type { Guest } from '../driver/types.js';
import { BoxbuildError, usageError } from '../errors.js';
import { EGRESS_ENVIRONMENT, guestNetworkEnvironment, networkOf } from '../network/guest.js';
import { PROFILES } from '../qemu/profiles.js';
import type { Accel } from '../qemu/profiles.js';
import type { Share, SharingName } from '../sharing/types.js';
import { describeCacheUse, packageCacheDir } from '../package-cache/store.js';
import { DEBIAN_MIRRORS, PackageCache, buildMirrors } from '../package-cache/cache.js';
import { waitFor } from '../util/abort.js';
import { checkGuestPath, existingDirectory } from './args.js';
import { buildDirectories } from './commands.js';
import { inRun } from './context.js';
import { type KiwiGlobals, checkBoxVariable, kiwiBuildWords, kiwiCmdline, takeKiwiGlobals } from './kiwi-cmdline.js';
import type { RunOptions } from './options.js';
import { consoleDevice, kernelCmdline, prepareRun, reportStarted, resolveBox, shareLoss } from './stages.js';
import { bootKernel } from './vmlinux.js';
import { terminalLender, windowSize } from './terminal.js';

/** What kiwi's `system boxbuild` command line asks for, besides the VM options. */
export interface KiwiRequest {
  /** The words after `--`. */
  buildArgs: string[];
  /** kiwi's global options given before `--`. */
  globals: KiwiGlobals;
  /** `--kiwi-version V`: the box installs this kiwi version first. */
  kiwiVersion?: string;
  /** `--shared-path P`: shared at the same path in the box. */
  sharedPath?: string;
}

/** The KIWI box contract's files in the target directory. */
export const RESULT_CODE = 'result.code';
export const RESULT_LOG = 'result.log';

export interface KiwiPlan {
  shares: Share[];
  description: string;
  targetDir: string;
  words: string[];
  customMount?: string;
}

/** Checks a request before anything is downloaded or started: directories, shares, the build's words. */
export function planKiwiBuild(request: KiwiRequest): KiwiPlan {
  const { description, targetDir, rest } = buildDirectories(request.buildArgs);
  const { globals, rest: others } = takeKiwiGlobals(rest, request.globals);
  const shares: Share[] = [
    { tag: 'kiwidescription', hostPath: description, guestPath: '/description', readOnly: true },
    { tag: 'kiwibundle', hostPath: targetDir, guestPath: '/bundle', readOnly: false },
  ];
  let customMount: string | undefined;
  if (request.sharedPath !== undefined) {
    const hostPath = existingDirectory(request.sharedPath, '--shared-path');
    customMount = checkBoxVariable('--shared-path', checkGuestPath(hostPath));
    shares.push({ tag: 'custompath', hostPath, guestPath: hostPath, readOnly: false });
  }
  return { shares, description, targetDir, words: kiwiBuildWords(globals, others), customMount };
}

/**
 * Reads result.code as the guest left it: a symlink is not followed (it could name any host file),
 * and anything but a regular file is refused. At most a few bytes are read.
 */
export async function readResultCode(path: string): Promise<string | undefined> {
  const file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ELOOP') throw new BoxbuildError('guestLost', `${path} is a symlink, not the build's result`);
    return undefined;
  });
  if (!file) return undefined;
  try {
    if (!(await file.stat()).isFile()) throw new BoxbuildError('guestLost', `${path} is not a regular file, not the build's result`);
    const { buffer, bytesRead } = await file.read(Buffer.alloc(64), 0, 64, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}

/** The build's exit status from result.code, which the box writes into the target directory. */
async function buildStatus(targetDir: string, guest: Guest): Promise<number> {
  const text = await readResultCode(join(targetDir, RESULT_CODE));
  if (text === undefined) {
    throw guest.error('guestLost', `the box stopped without writing ${RESULT_CODE}: the build did not run to its end (see ${join(targetDir, RESULT_LOG)})`);
  }
  const status = /^\s*(\d{1,3})\s*$/.exec(text);
  if (!status || Number(status[1]) > 255) throw guest.error('guestLost', `${join(targetDir, RESULT_CODE)} holds ${JSON.stringify(text.trim())}, not an exit status`);
  return Number(status[1]);
}

/**
 * Runs a kiwi build in a box that follows the KIWI box contract: the box's kernel and initrd with
 * its system disk behind a throwaway overlay, the build's words in kiwi="…" on the kernel command
 * line, the description and target directory shared by tag; the box writes result.code and
 * result.log into the target directory and powers off. Returns the build's exit status.
 * The same stages as an agent run (stages.ts), then: boot, wait for the box to power off, read its result.
 */
export async function runKiwiBox(options: RunOptions, box: BoxEntry, arch: Arch, request: KiwiRequest): Promise<number> {
  const plan = planKiwiBuild(request);
  if (options.container) {
    if (request.kiwiVersion !== undefined) throw usageError("--kiwi-version: boxbuild's KIWI box has Debian's kiwi, and its container installs no other");
    const { kiwiContainerCommand, runInContainer } = await import('./container.js');
    return runInContainer(options, box, arch, await kiwiContainerCommand(plan, { cacheRoot: options.cacheRoot, box: box.name, arch }));
  }
  const profile = PROFILES[arch];
  const console = consoleDevice(options, box);
  // --debug-shell: boxbuild's KIWI box opens a shell of this size on its console when the build fails.
  const host = options.terminal?.debugShell ? options.terminal.host : undefined;
  const size = host && windowSize(host);
  const debugShell = size ? [`boxbuild.debugshell=${size.rows}x${size.cols}`] : [];
  const cmdline = (sharing: SharingName, accel: Accel, environment: Record<string, string>) =>
    kiwiCmdline({
      arch,
      base: [kernelCmdline(box, arch, { profile, console, accel }, options.boxDebug), ...debugShell].join(' '),
      words: plan.words,
      noHalt: options.boxDebug,
      kiwiVersion: request.kiwiVersion,
      customMount: plan.customMount,
      sharing,
      environment,
    });
  const network = networkOf(options);
  const caching = network.mode !== 'none' && options.packageCache !== false;
  // The package cache is part of the egress proxy: with it, the build downloads through the proxy
  // on a full network too.
  const environment = caching ? { ...EGRESS_ENVIRONMENT } : guestNetworkEnvironment(network);
  // The longest backend name and command line: refuses a command line that is too long before any download.
  cmdline('virtiofs', 'tcg', environment);
  return inRun(options, async (ctx) => {
    const installed = await resolveBox(ctx, options, box, arch);
    if (!installed.manifest.files.system) throw new BoxbuildError('boxUnavailable', `box ${box.name} has no system disk ("system" file), which a KIWI box needs`);
    const kernel = await bootKernel(installed, arch, options.notice);
    const startedAt = new Date();
    // A result.code left by an earlier build must not pass for this one's.
    await rm(join(plan.targetDir, RESULT_CODE), { force: true });
    const packageCache = caching
      ? await PackageCache.open(join(options.cacheRoot, 'packages'), packageCacheDir(options.cacheRoot, box.name, arch), [...DEBIAN_MIRRORS, ...(await buildMirrors(plan.description, plan.words))])
      : undefined;
    const prepared = await prepareRun(ctx, options, { box, installed, kernel, packageCache, coldBecause: 'KIWI boxes always boot' });
    const { driver, provenance } = prepared;
    const sharing = await driver.share(ctx, plan.shares);
    ctx.enter('running the build');
    // The box's console is the build's output: kiwi's log as it goes (the kernel is quiet).
    const guest = await driver.boot(ctx, {
      kernel,
      initrd: join(installed.dir, installed.manifest.files.initrd.name),
      cmdline: cmdline(provenance.sharing, provenance.accelerator, environment),
      disks: [],
      shares: plan.shares,
      sharing,
      consoleEcho: options.stdout,
    });
    if (host) {
      // The box says so on its console (the build's output), then the shell reads what is typed there.
      const lend = terminalLender(ctx, host, { resized: () => {}, escaped: ctx.escape });
      void guest.consoleShows(/kiwi-box: the build failed with exit status \d+; here is a shell/, ctx.background()).then(
        () => guest.consoleInput && lend(guest.consoleInput),
        () => {}, // the run ended without one
      );
    }
    reportStarted(options, provenance, false);
    if (options.boxDebug) options.notice('--box-debug: the box stays up after the build (kiwi-no-halt); stop it with Ctrl-C');
    const exit = await ctx.race([(signal) => waitFor(guest.exited, signal), ...shareLoss(sharing, guest)]);
    ctx.detail(`timing: VM stopped ${((Date.now() - guest.startedAt) / 1000).toFixed(2)} s after QEMU started`);
    if (exit.signal || exit.exitCode !== 0) throw guest.error('vmFailed', `the box did not run: ${guest.describe(exit)}`);
    const status = await buildStatus(plan.targetDir, guest);
    await writeProvenance(plan.targetDir, provenance, { argv: plan.words, exitCode: status, startedAt, endedAt: new Date(), warm: false });
    if (packageCache) options.notice(describeCacheUse(packageCache.stats, prepared.egress?.passedBytes ?? 0));
    const log = join(plan.targetDir, RESULT_LOG);
    options.notice(status === 0 ? `build done; its log: ${log}` : `the build failed with exit status ${status}; its log: ${log}`);
    return status;
  });
}
