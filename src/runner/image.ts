import { lstat, mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { type Arch, hostArch } from '../box/arch.js';
import type { InstalledBox } from '../box/cache.js';
import type { BoxEntry } from '../box/registry.js';
import { BoxbuildError, usageError } from '../errors.js';
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

/** Finds root, kernel and initrd (ext2/3/4 partitions, or the whole disk), installs the guest files. */
const PREPARE = `
fail() { echo "$*" >&2; exit 3; }
modprobe -a virtio_blk crc32c_generic ext4 || fail "cannot load the disk drivers"
tries=0
until [ -b /dev/vda ]; do tries=$((tries + 1)); [ "$tries" -gt 500 ] && fail "the image's disk did not appear"; sleep 0.01; done
sleep 0.2
devices=$(ls -r /dev/vda*)
mkdir -p /image /boot-part
root=
for dev in $devices; do
  mount "$dev" /image 2>/dev/null || continue
  if [ -e /image/etc/os-release ] || [ -L /image/etc/os-release ]; then root=$dev; break; fi
  umount /image
done
[ -n "$root" ] || fail "no partition of the image holds a root file system (/etc/os-release) that boxbuild can mount (ext2, ext3, ext4)"
newest() { ls "$1"/vmlinuz-* "$1"/vmlinux-* "$1"/Image-* 2>/dev/null | tail -n 1; }
kernel=$(newest /image/boot)
if [ -z "$kernel" ]; then
  for dev in $devices; do
    [ "$dev" = "$root" ] && continue
    mount -o ro "$dev" /boot-part 2>/dev/null || continue
    kernel=$(newest /boot-part)
    [ -n "$kernel" ] && break
    umount /boot-part
  done
fi
[ -n "$kernel" ] || fail "the image has no kernel (vmlinuz-VERSION in /boot)"
dir=\${kernel%/*}
version=\${kernel##*/}
version=\${version#*-}
initrd=
for candidate in "$dir/initrd.img-$version" "$dir/initrd-$version" "$dir/initramfs-$version.img"; do
  [ -e "$candidate" ] && initrd=$candidate && break
done
[ -n "$initrd" ] || fail "the image has no initrd for its kernel $version"
cp "$kernel" /found/kernel && cp "$initrd" /found/initrd || fail "cannot copy the kernel and initrd"
# The file system's UUID: 16 bytes at offset 0x68 of the ext superblock, which starts at byte 1024.
uuid=$(dd if="$root" bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \\n')
echo "$uuid" | sed 's/^\\(.\\{8\\}\\)\\(.\\{4\\}\\)\\(.\\{4\\}\\)\\(.\\{4\\}\\)/\\1-\\2-\\3-\\4-/' >/found/root
mkdir -p /image/usr/lib/boxbuild
cp /init /image/usr/lib/boxbuild/init && cp /usr/lib/boxbuild/agent /usr/lib/boxbuild/build /image/usr/lib/boxbuild/ || fail "cannot write to the image's root file system"
sync
umount /boot-part 2>/dev/null
umount /image
echo "root $root, kernel $kernel, initrd $initrd"
`;

/** The architecture of a Linux kernel image: x86 bzImage ("HdrS"), or an arm64 Image, perhaps gzip-compressed ("ARM\\x64"). */
export function kernelArch(head: Buffer): Arch | undefined {
  if (head.subarray(0x202, 0x206).toString('latin1') === 'HdrS') return 'x86_64';
  let image = head;
  if (head[0] === 0x1f && head[1] === 0x8b) {
    try {
      image = gunzipSync(head, { finishFlush: 2 /* Z_SYNC_FLUSH: a truncated stream is fine */ });
    } catch {
      return undefined;
    }
  }
  return image.subarray(0x38, 0x3c).toString('latin1') === 'ARM\x64' ? 'aarch64' : undefined;
}

/** A file the preparing VM wrote: a regular file, not a link it may have planted. */
async function guestWritten(path: string, what: string): Promise<string> {
  const info = await lstat(path).catch(() => undefined);
  if (!info?.isFile()) throw new BoxbuildError('vmFailed', `the image's ${what} was not found (${basename(path)} is missing or not a regular file)`);
  return path;
}

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
  const command = { shares: [{ tag: 'found', hostPath: found, guestPath: '/found', readOnly: false }], argv: ['sh', '-c', PREPARE], cwd: '/' };
  const status = await runOnBox(ctx, preparing, debian, await resolveBox(ctx, preparing, debian, hostBoxArch), command);
  if (status !== 0) throw usageError(`--image ${imagePath}: ${lines.join(' / ') || `preparing it failed (${status})`}`);
  ctx.detail(`image: ${lines.at(-1)}`);
  const kernel = await guestWritten(join(found, 'kernel'), 'kernel');
  await guestWritten(join(found, 'initrd'), 'initrd');
  const uuid = (await readFile(await guestWritten(join(found, 'root'), 'root file system'), 'utf8')).trim();
  if (!/^[0-9A-Fa-f-]{8,36}$/.test(uuid)) throw usageError(`--image ${imagePath}: its root file system has no UUID to boot it by`);
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

/** Boots the image on a throwaway overlay and runs the command there; returns its exit status. */
export async function runInImage(options: RunOptions, imagePath: string, command: GuestCommand): Promise<number> {
  const image = resolve(imagePath);
  const info = await lstat(image).catch(() => undefined);
  if (!info?.isFile()) throw usageError(`--image ${imagePath}: not a file`);
  // Checked before any QEMU or qemu-img sees it: an image that names host files is refused.
  const inspected = await selfContainedImage(image, imagePath, 'usage');
  return inRun(options, async (ctx) => {
    const work = await privateRunDir(ctx, 'boxbuild-image-');
    const overlay = join(work, 'image.qcow2');
    await createOverlay(overlay, { path: image, ...inspected });
    // The image behind a throwaway overlay, first for the preparing VM, then as the booted VM's disk.
    const disk: DiskSpec = { path: overlay, format: 'qcow2', backing: { path: image, format: inspected.format }, cache: 'unsafe' };
    const { box, installed } = await imageBox(ctx, options, imagePath, image, work, disk);
    // A saved state would belong to this image only: every run boots.
    return runOnBox(ctx, { ...options, cold: true, extraDisks: [disk] }, box, installed, command);
  });
}
