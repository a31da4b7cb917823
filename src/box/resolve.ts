import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Share } from '../sharing/types.js';
import { BoxbuildError } from '../errors.js';
import { guestFilesDigest } from '../guest/guest-files.js';
import type { Arch } from './arch.js';
import { type InstalledBox, boxLockPath, brokenInstall, dropCurrentVersion, missingFiles, readInstalled } from './cache.js';
import type { NetContext } from './download.js';
import type { NetOptions } from './http.js';
import { withLock } from './lock.js';
import { describeFailure, describeNetError, stoppedError } from './failures.js';
import type { OciVariant } from './oci/pull.js';
import { type BoxEntry, findBox, loadRegistry } from './registry.js';

/** Runs a script in a VM of the `debian` box with `disk` attached and `shares` shared; resolves with its exit status. */
export type DiskScriptRunner = (request: {
  arch: Arch;
  cacheRoot: string;
  disk: string;
  /** The disk's format (raw unless said). */
  format?: 'raw' | 'qcow2';
  /** Attached read-only (the script only reads it). */
  readOnly?: boolean;
  script: string;
  shares: Share[];
  output: Writable;
  /** Where the script's stderr goes, when not into `output` with its stdout. */
  errors?: Writable;
  log: (line: string) => void;
  signal?: AbortSignal;
}) => Promise<number>;

export interface BoxRequest {
  cacheRoot: string;
  box: BoxEntry;
  arch: Arch;
  log: (line: string) => void;
  /** Ask the server whether a cached remote box is current (default true). */
  updateCheck?: boolean;
  /** The terminal for download progress bars; without one, progress is logged now and then. */
  progress?: Writable & { isTTY?: boolean; columns?: number };
  /** Download timeouts and retries (tests shorten them). */
  net?: Partial<NetOptions>;
  signal?: AbortSignal;
  /** For made system boxes: extra packages and the disk size (`box make --package --disk-size`). */
  recipe?: { packages?: string[]; diskSizeMiB?: number };
  /** How a system box's disk is prepared: in a VM (the runner gives it; src/box starts no VM of its own). */
  runScript?: DiskScriptRunner;
}

/*
 * Making and downloading load their modules (an HTTP client, tar, the box makers) when they are
 * needed: a run with a current box in the cache never does.
 */

/** The recipes of locally made boxes. */
const MAKERS: Record<string, (request: BoxRequest) => Promise<InstalledBox>> = {
  debian: async ({ box, cacheRoot, arch, log, signal }) => (await import('../guest/make-debian.js')).makeDebianBox({ name: box.name, cacheRoot, arch, log, signal }),
  'debian-system': makeSystemBox,
  import: refreshImported,
};

/** An imported box made current for this boxbuild's guest files, from what is cached (box import reads the source). */
async function refreshImported(request: BoxRequest): Promise<InstalledBox> {
  const { box, cacheRoot, arch, log, signal, runScript } = request;
  if (!runScript) throw new BoxbuildError('usage', `refreshing ${box.name} boots a VM, which this caller did not provide`);
  const { refreshImportedBox } = await import('./import/install.js');
  const initramfsBox = (of: Arch) => ensureBox({ ...request, arch: of, box: findBox(loadRegistry(), 'debian', of).box });
  return refreshImportedBox({ cacheRoot, name: box.name, log, signal, runScript, initramfsBox }, arch, box);
}

/** A system box boots with the kernel and initramfs of the bundled `debian` box of its architecture, which also makes its disk. */
async function makeSystemBox(request: BoxRequest): Promise<InstalledBox> {
  const { box, cacheRoot, arch, log, runScript } = request;
  const initramfs = { ...request, box: findBox(loadRegistry(), 'debian', arch).box };
  const { makeDebianSystemBox } = await import('../guest/make-debian-system.js');
  return makeDebianSystemBox({
    name: box.name,
    cacheRoot,
    arch,
    log,
    signal: request.signal,
    diskSizeMiB: request.recipe?.diskSizeMiB,
    packages: [...(box.arches[arch]?.packages ?? []), ...(request.recipe?.packages ?? [])],
    initramfsBox: () => ensureBox(initramfs),
    runWithDisk: (disk, script, shares, output) => {
      if (!runScript) throw new BoxbuildError('usage', `making ${box.name} boots a VM, which this caller did not provide`);
      return runScript({ arch, cacheRoot, disk, script, shares, output, log, signal: request.signal });
    },
  });
}

const variantName = ({ box, arch }: BoxRequest) => `box ${box.name} (${arch})`;

/** A locally made box is current when it carries this boxbuild's guest files. */
export async function isMadeBoxCurrent(installed: InstalledBox | undefined): Promise<boolean> {
  return installed !== undefined && installed.manifest.sources['boxbuild-guest'] === (await guestFilesDigest());
}

/**
 * Runs `task` under the variant's lock. Whatever fails in it becomes one line: exit 130/143 when
 * stopped by a signal, else exit 69 saying what could not be done (a failed tool, a full disk).
 */
function underVariantLock<T>(request: BoxRequest, doing: 'making' | 'downloading' | 'repairing', task: () => Promise<T>): Promise<T> {
  const what = `${doing} ${variantName(request)}`;
  const lockPath = boxLockPath(request.cacheRoot, request.box.name, request.arch);
  const locked = withLock(lockPath, task, { doing: what, onWait: request.log, signal: request.signal });
  return locked.catch((error: unknown) => {
    if (request.signal?.aborted) throw error instanceof BoxbuildError && error.exitCode > 128 ? error : stoppedError(request.signal, `${what} was stopped`);
    if (error instanceof BoxbuildError) throw error;
    throw new BoxbuildError('boxUnavailable', `${what} failed: ${describeFailure(error)}`, { cause: error });
  });
}

/**
 * Makes a locally made box (e.g. `debian`) under a lock, so that concurrent boxbuilds make it once.
 * With `onlyIfOutdated`, a current box (perhaps installed by another process meanwhile) is kept.
 */
export async function makeBox(request: BoxRequest, onlyIfOutdated = false): Promise<InstalledBox> {
  const { box, arch, cacheRoot, log } = request;
  const maker = box.make ? MAKERS[box.make] : undefined;
  if (!maker) throw new BoxbuildError('usage', `box "${box.name}" is not made locally (it has no known "make" recipe)`);
  return underVariantLock(request, 'making', async () => {
    const installed = await readInstalled(cacheRoot, box.name, arch);
    if (onlyIfOutdated && (await isMadeBoxCurrent(installed))) return installed!;
    if (installed && onlyIfOutdated) log(`box ${box.name} (${arch}) was made by another boxbuild version; making it again`);
    return maker(request);
  });
}

/** The network context of a request: got client, timeouts, progress output. */
export async function netContext(request: Pick<BoxRequest, 'log' | 'progress' | 'net' | 'signal'>): Promise<NetContext> {
  const { DEFAULT_NET, httpClient, netFromEnv } = await import('./http.js');
  const net = { ...DEFAULT_NET, ...netFromEnv(), ...request.net };
  return { client: httpClient(net), net, log: request.log, signal: request.signal, progress: { stream: request.progress, log: request.log } };
}

function remoteVariant(request: BoxRequest) {
  const { cacheRoot, box, arch } = request;
  return { cacheRoot, name: box.name, arch, sources: box.arches[arch]?.sources ?? [], memoryMiB: box.memoryMiB };
}

/** The variant as published in an OCI registry, when the registry entry names one (it wins over "make"). */
async function ociVariant(request: BoxRequest): Promise<OciVariant | undefined> {
  const { cacheRoot, box, arch } = request;
  const oci = box.arches[arch]?.oci;
  return oci && { cacheRoot, name: box.name, arch, ref: oci.ref, signedBy: oci.signedBy, guestDigest: await guestFilesDigest() };
}

/** Whether this machine makes the variant (else it is downloaded or pulled). */
const isMadeHere = ({ box, arch }: BoxRequest) => box.make !== undefined && !box.arches[arch]?.oci;

/**
 * Whether the cached version of a box is current: a made box carries this boxbuild's guest
 * files; a remote box matches the registry and the server (one small conditional request,
 * bounded by the update-check timeout). Network failures are thrown.
 */
export async function isBoxCurrent(request: BoxRequest, installed: InstalledBox): Promise<boolean> {
  if (isMadeHere(request)) return isMadeBoxCurrent(installed);
  const ctx = await netContext(request);
  const timeout = AbortSignal.timeout(ctx.net.updateCheckTimeoutMs);
  const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
  try {
    const oci = await ociVariant(request);
    if (oci) return await (await import('./oci/pull.js')).isOciCurrent(oci, installed, { ...ctx, signal });
    const { isUpToDate } = await import('./fetch.js');
    return await isUpToDate(installed, remoteVariant(request).sources, { ...ctx, signal });
  } catch (error) {
    if (timeout.aborted) throw new Error(`no answer within ${ctx.net.updateCheckTimeoutMs / 1000} s`);
    throw error;
  }
}

/**
 * Downloads and installs the current version of a remote box under the box's lock, unless
 * another boxbuild installed a version other than `seen` while this one waited for the lock.
 */
export async function downloadBox(request: BoxRequest, seen: InstalledBox | undefined): Promise<InstalledBox> {
  return underVariantLock(request, 'downloading', async () => {
    const installed = await readInstalled(request.cacheRoot, request.box.name, request.arch);
    if (installed && installed.dir !== seen?.dir) return installed;
    const oci = await ociVariant(request);
    if (oci) return (await import('./oci/pull.js')).installOci(oci, await netContext(request), installed);
    const { installRemote } = await import('./fetch.js');
    return installRemote(remoteVariant(request), await netContext(request), installed);
  });
}

/** Makes a made box again when it is outdated; downloads a remote box's new version when there is one. */
export async function updateBox(request: BoxRequest): Promise<InstalledBox> {
  if (isMadeHere(request)) return makeBox(request, true);
  const installed = await readInstalled(request.cacheRoot, request.box.name, request.arch);
  if (installed && (await isBoxCurrent(request, installed))) return installed;
  return downloadBox(request, installed);
}

/**
 * A cached box must have all its files (a stat each: a run must not find out in QEMU): one that
 * lacks one is damaged, one line saying which and how to repair it (exit 69).
 */
async function whole(request: BoxRequest, installed: InstalledBox): Promise<InstalledBox> {
  const missing = (await missingFiles(installed)).map((name) => join(installed.dir, name));
  if (missing.length === 0) return installed;
  const { box, arch } = request;
  throw new BoxbuildError(
    'boxUnavailable',
    `${variantName(request)} is damaged: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing; repair it with "boxbuild box verify --repair ${box.name} --arch ${arch}"`,
  );
}

/** Replaces the cached version of a box (a damaged one): it is removed, then the box is made or downloaded afresh. */
export async function repairBox(request: BoxRequest): Promise<InstalledBox> {
  const { cacheRoot, box, arch } = request;
  await underVariantLock(request, 'repairing', () => dropCurrentVersion(cacheRoot, box.name, arch));
  return isMadeHere(request) ? makeBox(request) : downloadBox(request, undefined);
}

/**
 * Returns the installed box: made or downloaded first when missing; made again when outdated;
 * for a cached remote box, a new version is downloaded when the update check finds one. When
 * the check or the update fails, the cached (verified) box is used with a one-line warning. A
 * cached box that lacks a file is an error (see whole).
 */
export async function ensureBox(request: BoxRequest): Promise<InstalledBox> {
  const { cacheRoot, box, arch } = request;
  const installed = await readInstalled(cacheRoot, box.name, arch);
  const broken = installed ? undefined : await brokenInstall(cacheRoot, box.name, arch);
  if (broken) request.log(`${variantName(request)}: ${broken}; ${isMadeHere(request) ? 'making' : 'downloading'} it again`);
  if (isMadeHere(request)) return installed && (await isMadeBoxCurrent(installed)) ? whole(request, installed) : makeBox(request, true);
  if (!installed) return downloadBox(request, undefined);
  await whole(request, installed);
  if (request.updateCheck === false) return installed;
  try {
    if (await isBoxCurrent(request, installed)) return installed;
    request.log(`${variantName(request)} has a new version; downloading it`);
    return await downloadBox(request, installed);
  } catch (error) {
    if (request.signal?.aborted) throw error instanceof BoxbuildError ? error : stoppedError(request.signal, `updating ${variantName(request)} was stopped`);
    request.log(`warning: cannot update ${variantName(request)} (${describeNetError(error)}); using the cached version ${installed.manifest.version}`);
    return installed;
  }
}
