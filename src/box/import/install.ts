import { constants } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { BoxbuildError, usageError } from '../../errors.js';
import { guestFilesDigest } from '../../guest/guest-files.js';
import { mustRun } from '../../guest/make-tool.js';
import { type Arch, hostArch } from '../arch.js';
import { markRunDir } from '../../util/run-dirs.js';
import { type BoxManifest, type InstalledBox, boxLockPath, freshWorkDir, installVersion, readInstalled } from '../cache.js';
import { manifestFileOf } from '../hash.js';
import { describeFailure, stoppedError } from '../failures.js';
import { withLock } from '../lock.js';
import type { BoxEntry } from '../registry.js';
import { type DiskScriptRunner, isMadeBoxCurrent } from '../resolve.js';
import { PREPARE_DISK, foundFiles, kernelArch } from './disk.js';
import { readHead } from '../../util/file.js';
import { saveImportedEntry } from './entries.js';
import { type ImportSource, type Layer, readImportSource } from './source.js';

/*
 * `box import NAME SOURCE`: an image the user has becomes a box. What is read from the source is
 * checked on the host (src/box/import/source.ts); nothing of it is unpacked or mounted here: a VM of
 * the `debian` box writes the box's disk.
 * - A root file system (directory, tarball, OCI or Docker image) is extracted layer after layer onto
 *   a new ext4 disk, and boots with the `debian` box's kernel and initramfs, whose init mounts it and
 *   runs each command chrooted into it (boxbuild.chroot): any root with a /bin/sh runs builds, with
 *   every sharing backend, whatever tools it has.
 * - A disk image (qcow2, raw, a Vagrant box's) is copied into the cache; the VM finds its root file
 *   system, kernel and initrd, and puts boxbuild's init and agent into its root: it boots its own
 *   kernel, whose initrd mounts the root and starts boxbuild's init there.
 */

export interface ImportRequest {
  cacheRoot: string;
  name: string;
  source: string;
  /** The architecture, when the image does not say or to pick one of an index. */
  arch?: Arch;
  /** A disk image's kernel and initrd, when they are not in the image (`--kernel`, `--initrd`). */
  kernel?: { kernel: string; initrd: string };
  /** Size of a root file system's disk (the qcow2 holds only what is used). */
  diskSizeMiB?: number;
  memoryMiB?: number;
  log: (line: string) => void;
  signal?: AbortSignal;
  runScript: DiskScriptRunner;
  /** The installed `debian` box of an architecture (a root file system boots with its kernel and initramfs). */
  initramfsBox: (arch: Arch) => Promise<InstalledBox>;
}

/** The kind of an imported box (box.json sources["import-kind"]), which says how it is made current again. */
type ImportKind = 'rootfs' | 'disk';

const fail = (message: string, cause?: unknown) => new BoxbuildError('boxUnavailable', message, { cause });

const BOOT_WORDS = 'quiet mitigations=off cryptomgr.notests';
const ARCH_WORDS: Partial<Record<Arch, string>> = { x86_64: 'tsc=reliable no_timer_check' };
const ROOTFS_WORDS = 'boxbuild.root=/dev/vda boxbuild.chroot';

/** The ext4 disk of a root file system: what it holds, a quarter more, room for the build (sparse: costs nothing until written). */
function diskSizeMiB(source: Extract<ImportSource, { kind: 'rootfs' }>, asked?: number): number {
  if (asked) return asked;
  const needed = Math.ceil((source.bytes * 1.25 + source.files * 8192) / 2 ** 20) + 512;
  return Math.max(8192, needed);
}

/** Whiteouts and markers go to the VM as lines: a path with a line break in it cannot. */
function lines(paths: string[], layer: number): string {
  const broken = paths.find((path) => path.includes('\n'));
  if (broken !== undefined) throw fail(`layer ${layer + 1} has a whiteout whose name holds a line break: ${JSON.stringify(broken)}`);
  return paths.map((path) => `${path}\n`).join('');
}

/** The layers as the VM reads them: N.tar, with N.delete, N.opaque and N.markers beside it. */
async function layerDir(layers: Layer[], dir: string): Promise<void> {
  await mkdir(dir);
  for (const [n, layer] of layers.entries()) {
    await link(layer.file, join(dir, `${n}.tar`));
    await writeFile(join(dir, `${n}.delete`), lines(layer.whiteouts, n));
    await writeFile(join(dir, `${n}.opaque`), lines(layer.opaque, n));
    await writeFile(join(dir, `${n}.markers`), lines(layer.markers, n));
  }
}

/**
 * Run as root in the VM: each layer's whiteouts delete what the layers below put there, then the
 * layer is extracted (busybox tar: owners, modes and device nodes as the tar has them) and its
 * whiteout markers removed. The host checked that no path goes through a link.
 */
const EXTRACT_LAYERS = `set -e
modprobe -a virtio_blk crc32c_generic ext4
mount -o noatime /dev/vda /mnt
n=0
while [ -e "/layers/$n.tar" ]; do
  while IFS= read -r path; do rm -rf "/mnt/$path"; done <"/layers/$n.delete"
  while IFS= read -r dir; do
    [ -d "/mnt/$dir" ] && find "/mnt/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} \\;
  done <"/layers/$n.opaque"
  tar -x -f "/layers/$n.tar" -C /mnt
  while IFS= read -r marker; do rm -f "/mnt/$marker"; done <"/layers/$n.markers"
  n=$((n + 1))
  echo "layer $n extracted"
done
rm -rf /mnt/lost+found
sync
umount /mnt
`;

/** The last lines a VM script printed, for its error message. */
function lastLines(output: PassThrough): () => string {
  let kept: string[] = [];
  output.on('data', (chunk: Buffer) => (kept = [...kept, ...chunk.toString().split('\n').filter(Boolean)].slice(-4)));
  return () => kept.join(' / ');
}

/** A root file system's disk: an empty ext4 file system (mkfs as any user), filled by a VM of the host's `debian` box. */
export async function rootfsDisk(request: Pick<ImportRequest, 'cacheRoot' | 'diskSizeMiB' | 'log' | 'signal' | 'runScript'>, source: Extract<ImportSource, { kind: 'rootfs' }>, work: string, disk: string): Promise<void> {
  const { log, signal } = request;
  const raw = join(work, 'root.raw');
  await mustRun('mkfs.ext4', 'mkfs.ext4', ['-q', '-F', '-L', 'boxbuild-root', '-E', 'root_owner=0:0', raw, `${diskSizeMiB(source, request.diskSizeMiB)}M`], { signal });
  const layers = join(work, 'layers');
  await layerDir(source.layers, layers);
  log(`extracting ${source.layers.length} layer${source.layers.length === 1 ? '' : 's'} (${source.files} entries) onto the box's disk in a VM`);
  const output = new PassThrough();
  const shown = lastLines(output);
  const status = await request.runScript({
    arch: hostArch(),
    cacheRoot: request.cacheRoot,
    disk: raw,
    script: EXTRACT_LAYERS,
    shares: [{ tag: 'layers', hostPath: layers, guestPath: '/layers', readOnly: true }],
    output,
    log,
    signal,
  });
  if (status !== 0) throw fail(`extracting the root file system failed in the VM (${status}): ${shown()}`);
  await rm(layers, { recursive: true, force: true });
  await mustRun('qemu-img convert', 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { signal });
  await rm(raw, { force: true });
}

/**
 * A disk image's root: found, and boxbuild's init and agent put into it, by a VM of the host's
 * `debian` box with the box's own copy of the disk; its kernel and initrd are copied out to `staging`.
 * Returns the kernel command-line words that boot it.
 */
async function prepareDisk(request: ImportRequest, work: string, staging: string, disk: string, arch: Arch | undefined): Promise<{ arch: Arch; words: string }> {
  const found = join(work, 'found');
  await mkdir(found);
  const output = new PassThrough();
  const shown = lastLines(output);
  request.log(`finding the ${request.kernel ? '' : 'kernel and '}root file system of the image in a VM`);
  const status = await request.runScript({
    arch: hostArch(),
    cacheRoot: request.cacheRoot,
    disk,
    format: 'qcow2',
    script: `${request.kernel ? 'KERNEL_GIVEN=1\n' : ''}${PREPARE_DISK}`,
    shares: [{ tag: 'found', hostPath: found, guestPath: '/found', readOnly: false }],
    output,
    log: request.log,
    signal: request.signal,
  });
  if (status !== 0) throw fail(`${request.source}: ${shown() || `preparing it failed (${status})`}`);
  const { kernel, initrd, uuid } = await foundFiles(found, request.source, request.kernel);
  const detected = kernelArch(await readHead(kernel, 64 * 1024));
  if (!detected) throw usageError(`${request.kernel ? `--kernel ${request.kernel.kernel}` : `${request.source}: its kernel`} is neither an x86_64 bzImage nor an arm64 Image`);
  if (arch && arch !== detected) throw usageError(`${request.source}: its kernel is for ${detected}, not ${arch}`);
  await copyFile(kernel, join(staging, 'kernel'));
  await copyFile(initrd, join(staging, 'initrd'));
  return { arch: detected, words: `root=UUID=${uuid} rw init=/usr/lib/boxbuild/init` };
}

/** The entry of a root file system's box (also exec --image's throwaway one). */
export const rootfsEntry = (request: Pick<ImportRequest, 'name' | 'source' | 'memoryMiB'>, what: string, arch: Arch, previous?: BoxEntry) => importedEntry(request, what, arch, ROOTFS_WORDS, previous);

/** The registry entry of an imported box (kept in the cache, see entries.ts). */
function importedEntry(request: Pick<ImportRequest, 'name' | 'source' | 'memoryMiB'>, what: string, arch: Arch, words: string, previous?: BoxEntry): BoxEntry {
  return {
    name: request.name,
    description: `imported from ${request.source} (${what})`,
    protocol: 'boxbuild',
    make: 'import',
    buildProgram: '/usr/lib/boxbuild/build',
    memoryMiB: request.memoryMiB ?? previous?.memoryMiB ?? 1024,
    cpus: 1,
    console: 'ttyS0',
    cmdline: BOOT_WORDS,
    arches: { ...previous?.arches, [arch]: { cmdline: `${ARCH_WORDS[arch] ?? ''} ${words}`.trim(), sources: [], packages: [] } },
    origin: 'box import',
  };
}

/** The kernel and initrd of the `debian` box, into `staging`: they boot a root file system. */
async function initramfsFiles(request: ImportRequest, arch: Arch, staging: string): Promise<InstalledBox> {
  const base = await request.initramfsBox(arch);
  for (const file of ['kernel', 'initrd'] as const) await copyFile(join(base.dir, base.manifest.files[file].name), join(staging, file));
  return base;
}

async function install(request: ImportRequest, staging: string, arch: Arch, kind: ImportKind, record: Record<string, string>): Promise<InstalledBox> {
  const files = { kernel: await manifestFileOf(join(staging, 'kernel')), initrd: await manifestFileOf(join(staging, 'initrd')), system: await manifestFileOf(join(staging, 'system.qcow2')) };
  const manifest: BoxManifest = {
    name: request.name,
    arch,
    version: `${record['import-what']} ${record['import-sha256']!.slice(0, 12)}`,
    files,
    sources: { ...record, 'import-kind': kind, 'boxbuild-guest': await guestFilesDigest() },
  };
  return installVersion(request.cacheRoot, staging, manifest);
}

/** The installed version that holds this very source, made by this boxbuild: importing it again changes nothing. */
async function sameImport(request: ImportRequest, source: ImportSource, previous: BoxEntry | undefined): Promise<InstalledBox | undefined> {
  const told = source.kind === 'rootfs' ? source.arch : (request.arch ?? source.arch);
  for (const arch of told ? [told] : (Object.keys(previous?.arches ?? {}) as Arch[])) {
    const installed = await readInstalled(request.cacheRoot, request.name, arch);
    if (installed?.manifest.sources['import-sha256'] === source.sha256 && (await isMadeBoxCurrent(installed))) return installed;
  }
  return undefined;
}

/** Moves what `build` made (kernel, initrd, system.qcow2) into a staging directory of the cache: a reflink or a copy. */
async function stage(built: string, staging: string): Promise<void> {
  await mkdir(staging);
  for (const file of ['kernel', 'initrd', 'system.qcow2']) await copyFile(join(built, file), join(staging, file), constants.COPYFILE_FICLONE);
}

/**
 * Imports SOURCE as box NAME (for the architecture the image is for): a new version of the box
 * when its bytes changed. The source is read and the disk made in a private directory of TMPDIR
 * (the architecture, and so the variant's lock, is known only then); the box is installed under
 * the lock. Whatever fails leaves the cache as it was.
 */
export async function importBox(request: ImportRequest, previous: BoxEntry | undefined): Promise<{ installed: InstalledBox; source: ImportSource }> {
  return importing(request, previous).catch((error: unknown) => {
    if (request.signal?.aborted) throw error instanceof BoxbuildError && error.exitCode > 128 ? error : stoppedError(request.signal, `importing ${request.source} was stopped`);
    if (error instanceof BoxbuildError) throw error;
    throw fail(`importing ${request.source} failed: ${describeFailure(error)}`, error);
  });
}

async function importing(request: ImportRequest, previous: BoxEntry | undefined): Promise<{ installed: InstalledBox; source: ImportSource }> {
  const scratch = await mkdtemp(join(tmpdir(), 'boxbuild-import-'));
  try {
    await markRunDir(scratch);
    await mkdir(join(scratch, 'source'));
    const source = await readImportSource(request.source, join(scratch, 'source'), { arch: request.arch, signal: request.signal });
    const unchanged = await sameImport(request, source, previous);
    if (unchanged) {
      request.log(`box ${request.name} (${unchanged.manifest.arch}) has this ${source.what} already (sha256 ${source.sha256.slice(0, 16)})`);
      return { installed: unchanged, source };
    }
    const built = join(scratch, 'box');
    await mkdir(built);
    const record: Record<string, string> = { import: request.source, 'import-what': source.what, 'import-sha256': source.sha256 };
    let arch: Arch;
    let words: string;
    if (source.kind === 'rootfs') {
      if (request.kernel) throw usageError(`--kernel: ${request.source} is a root file system, which boots with the debian box's kernel`);
      arch = source.arch;
      await rootfsDisk(request, source, scratch, join(built, 'system.qcow2'));
      record.kernel = (await initramfsFiles(request, arch, built)).manifest.version;
      words = ROOTFS_WORDS;
    } else {
      // The box's own copy, self-contained and in qcow2 whatever the source's format (checked before qemu-img opened it).
      await mustRun('qemu-img convert', 'qemu-img', ['convert', '-f', source.format, '-O', 'qcow2', source.path, join(built, 'system.qcow2')], { signal: request.signal });
      ({ arch, words } = await prepareDisk(request, scratch, built, join(built, 'system.qcow2'), request.arch ?? source.arch));
      if (request.kernel) record['import-kernel'] = 'given';
    }
    const entry = importedEntry(request, source.what, arch, words, previous);
    const doing = `importing box ${request.name} (${arch})`;
    const installed = await withLock(boxLockPath(request.cacheRoot, request.name, arch), async () => {
      const work = await freshWorkDir(request.cacheRoot, request.name, arch, 'staging-');
      try {
        await stage(built, join(work, 'box'));
        const done = await install(request, join(work, 'box'), arch, source.kind, record);
        await saveImportedEntry(request.cacheRoot, entry);
        return done;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }, { doing, onWait: request.log, signal: request.signal });
    return { installed, source };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * An imported box whose guest files are outdated (another boxbuild version), made current without
 * its source: a root file system's disk is kept and gets the current `debian` box's kernel and
 * initramfs; a disk image's copy gets the current init and agent.
 */
export async function refreshImportedBox(request: Omit<ImportRequest, 'source'>, arch: Arch, entry: BoxEntry): Promise<InstalledBox> {
  const installed = await readInstalled(request.cacheRoot, request.name, arch);
  const record = installed?.manifest.sources;
  if (!installed || !record?.import || !installed.manifest.files.system) {
    throw fail(`box ${request.name} (${arch}) is not in the cache: import it (boxbuild box import ${request.name} SOURCE --arch ${arch})`);
  }
  const work = await freshWorkDir(request.cacheRoot, request.name, arch, 'make-');
  try {
    const staging = join(work, 'box');
    await mkdir(staging);
    const disk = join(staging, 'system.qcow2');
    const full = { ...request, source: record.import };
    const kept = Object.fromEntries(Object.entries(record).filter(([key]) => key.startsWith('import') && key !== 'import-kind'));
    if (record['import-kind'] === 'disk') {
      await copyFile(join(installed.dir, installed.manifest.files.system.name), disk);
      const own = (file: 'kernel' | 'initrd') => join(installed.dir, installed.manifest.files[file].name);
      const kernel = record['import-kernel'] === 'given' ? { kernel: own('kernel'), initrd: own('initrd') } : undefined;
      const { words } = await prepareDisk({ ...full, kernel }, work, staging, disk, arch);
      await saveImportedEntry(request.cacheRoot, importedEntry(full, record['import-what'] ?? 'disk image', arch, words, entry));
      return await install(full, staging, arch, 'disk', kept);
    }
    await link(join(installed.dir, installed.manifest.files.system.name), disk);
    const base = await initramfsFiles(full, arch, staging);
    return await install(full, staging, arch, 'rootfs', { ...kept, kernel: base.manifest.version });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

