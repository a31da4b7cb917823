import { constants } from 'node:fs';
import { copyFile, lstat, mkdir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { hostArch } from '../box/arch.js';
import type { InstalledBox } from '../box/cache.js';
import { PREPARE_DISK, foundFiles, kernelArch } from '../box/import/disk.js';
import { rootfsDisk, rootfsEntry } from '../box/import/install.js';
import { type ImportSource, readImportSource } from '../box/import/source.js';
import type { DiskScriptRunner } from '../box/resolve.js';
import type { BoxEntry } from '../box/registry.js';
import { usageError } from '../errors.js';
import { readHead } from '../util/file.js';
import { createOverlay } from '../driver/qemu/system-disk.js';
import type { DiskSpec } from '../qemu/argv.js';
import { selfContainedImage } from '../qemu/image-file.js';
import { runOnBox } from './agent.js';
import { type RunContext, inRun } from './context.js';
import type { GuestCommand, RunOptions } from './options.js';
import { lookupBox, privateRunDir, resolveBox } from './stages.js';

/*
 * `exec --image FILE`: boots a disk image a build produced, on a throwaway overlay, and runs a
 * command in it. A VM of the `debian` box first finds the image's root file system and its kernel
 * and initrd, and puts boxbuild's init and agent into the root (on the overlay); the image then
 * boots its own kernel and initrd, which mount its root and start boxbuild's init there.
 */

const manifestFile = (name: string) => ({ name, sha256: '', size: 0 });

/**
 * The preparing VM's run: a VM of the `debian` box with the image's overlay, no network, its output
 * kept for the error message. Of the user's options it takes only what says how to run VMs here:
 * not the command's stdin or terminal, not what the image's VM is told to be.
 */
function preparingRun(options: RunOptions, disk: DiskSpec, output: PassThrough): RunOptions {
  const { cacheRoot, accel, sharing, virtiofsd, bootTimeoutMs, notice, verbose, boxFetch } = options;
  return { box: 'debian', arch: hostArch(), cacheRoot, accel, sharing, virtiofsd, bootTimeoutMs, notice, verbose, boxFetch, cold: true, network: { mode: 'none', allow: [] }, stdout: output, stderr: output, extraDisks: [disk] };
}

/** Finds the image's kernel, initrd and root file system with a preparing VM: the box that boots it. */
async function imageBox(ctx: RunContext, options: RunOptions, imagePath: string, image: string, work: string, disk: DiskSpec): Promise<{ box: BoxEntry; installed: InstalledBox }> {
  const found = join(work, 'found');
  await mkdir(found);
  const output = new PassThrough();
  // The last lines the preparation printed (what it found, or why it failed): no more are kept.
  let lines: string[] = [];
  output.on('data', (chunk: Buffer) => (lines = [...lines, ...chunk.toString().split('\n').filter(Boolean)].slice(-3)));
  options.notice(`finding the kernel and root file system of ${imagePath}`);
  const preparing = preparingRun(options, disk, output);
  const { box: debian, arch: hostBoxArch } = lookupBox(preparing);
  const command = { shares: [{ tag: 'found', hostPath: found, guestPath: '/found', readOnly: false }], argv: ['sh', '-c', PREPARE_DISK], cwd: '/' };
  const status = await runOnBox(ctx, preparing, debian, await resolveBox(ctx, preparing, debian, hostBoxArch), command);
  if (status !== 0) throw usageError(`--image ${imagePath}: ${lines.join(' / ') || `preparing it failed (${status})`}`);
  ctx.detail(`image: ${lines.at(-1)}`);
  const { kernel, uuid } = await foundFiles(found, `--image ${imagePath}`);
  const arch = kernelArch(await readHead(kernel, 64 * 1024));
  if (!arch) throw usageError(`--image ${imagePath}: its kernel is neither an x86_64 bzImage nor an arm64 Image`);
  if (options.arch && options.arch !== arch) throw usageError(`--image ${imagePath}: its kernel is for ${arch}, not ${options.arch}`);
  const box: BoxEntry = {
    name: basename(imagePath),
    description: `the image ${image}`,
    protocol: 'boxbuild',
    memoryMiB: 1024,
    cpus: 1,
    console: 'ttyS0',
    // The image's initrd mounts its root; boxbuild's init starts the agent there.
    cmdline: `root=UUID=${uuid} rw init=/usr/lib/boxbuild/init quiet mitigations=off`,
    arches: { [arch]: { cmdline: '', sources: [], packages: [] } },
    origin: '--image',
  };
  const installed: InstalledBox = {
    dir: work,
    manifest: { name: box.name, arch, version: image, files: { kernel: manifestFile('found/kernel'), initrd: manifestFile('found/initrd') }, sources: {} },
  };
  return { box, installed };
}

/** What box import's VM scripts run in here: a VM of the `debian` box in this run's context, with the disk attached. */
function inThisRun(ctx: RunContext, options: RunOptions): DiskScriptRunner {
  return async ({ disk, format = 'raw', script, shares, output }) => {
    const preparing = preparingRun(options, { path: disk, format, cache: 'unsafe' }, output as PassThrough);
    const { box: debian, arch } = lookupBox(preparing);
    return runOnBox(ctx, preparing, debian, await resolveBox(ctx, preparing, debian, arch), { shares, argv: ['sh', '-c', script], cwd: '/' });
  };
}

/**
 * A root file system (directory, tarball, OCI or Docker image): extracted onto a throwaway disk as
 * `box import` does, booted with the `debian` box's kernel and initramfs.
 */
async function rootfsImageBox(ctx: RunContext, options: RunOptions, imagePath: string, source: Extract<ImportSource, { kind: 'rootfs' }>, work: string): Promise<{ box: BoxEntry; installed: InstalledBox }> {
  if (options.arch && options.arch !== source.arch) throw usageError(`--image ${imagePath}: it is for ${source.arch}, not ${options.arch}`);
  const disk = join(work, 'system.qcow2');
  await rootfsDisk({ cacheRoot: options.cacheRoot, log: options.notice, signal: ctx.signal, runScript: inThisRun(ctx, options) }, source, work, disk);
  const kernelBox = { ...options, box: 'debian', arch: source.arch };
  const base = await resolveBox(ctx, kernelBox, lookupBox(kernelBox).box, source.arch);
  for (const file of ['kernel', 'initrd'] as const) await copyFile(join(base.dir, base.manifest.files[file].name), join(work, file), constants.COPYFILE_FICLONE);
  const box = rootfsEntry({ name: basename(imagePath), source: imagePath }, source.what, source.arch);
  const files = { kernel: manifestFile('kernel'), initrd: manifestFile('initrd'), system: manifestFile('system.qcow2') };
  return { box, installed: { dir: work, manifest: { name: box.name, arch: source.arch, version: source.sha256, files, sources: {} } } };
}

/**
 * Runs the command in an image: a disk image boots on a throwaway overlay (never written, never
 * copied); any other source `box import` takes is made a throwaway box first. Returns the exit status.
 */
export async function runInImage(options: RunOptions, imagePath: string, command: GuestCommand): Promise<number> {
  const image = resolve(imagePath);
  // Checked before any QEMU or qemu-img sees it: an image that names host files is refused.
  if ((await lstat(image).catch(() => undefined))?.isFile()) await selfContainedImage(image, imagePath, 'usage');
  return inRun(options, async (ctx) => {
    const work = await privateRunDir(ctx, 'boxbuild-image-');
    await mkdir(join(work, 'source'));
    const source = await ctx.wait(readImportSource(imagePath, join(work, 'source'), { arch: options.arch, signal: ctx.signal }));
    if (source.kind === 'rootfs') {
      const { box, installed } = await rootfsImageBox(ctx, options, imagePath, source, work);
      return runOnBox(ctx, { ...options, arch: source.arch, cold: true }, box, installed, command);
    }
    const inspected = await selfContainedImage(source.path, imagePath, 'usage');
    const overlay = join(work, 'image.qcow2');
    await createOverlay(overlay, { path: source.path, ...inspected });
    // The image behind a throwaway overlay, first for the preparing VM, then as the booted VM's disk.
    const disk: DiskSpec = { path: overlay, format: 'qcow2', backing: { path: source.path, format: inspected.format }, cache: 'unsafe' };
    const { box, installed } = await imageBox(ctx, options, imagePath, image, work, disk);
    // A saved state would belong to this image only: every run boots.
    return runOnBox(ctx, { ...options, cold: true, extraDisks: [disk] }, box, installed, command);
  });
}
