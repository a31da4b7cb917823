import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { type Arch, debianArch, hostArch } from '../box/arch.js';
import { type BoxManifest, type InstalledBox, type ManifestFile, freshWorkDir, installVersion, readInstalled } from '../box/cache.js';
import { BoxbuildError } from '../errors.js';
import { guestFilesDigest } from './make-debian.js';
import { mustRun } from './make-tool.js';

/** Packages every system box has: compilers, sshfs for the sshfs backend, kmod for the agent, sshd for the SSH channel. */
export const SYSTEM_PACKAGES = ['build-essential', 'sshfs', 'kmod', 'iproute2', 'openssh-server'];

export interface SystemBoxOptions {
  name: string;
  cacheRoot: string;
  arch: Arch;
  log: (line: string) => void;
  /** Stops debootstrap and the second-stage VM (Ctrl-C). */
  signal?: AbortSignal;
  /** Extra packages (`--package`). */
  packages?: string[];
  /** Size of the root file system (`--disk-size`); the qcow2 holds only what is used. */
  diskSizeMiB?: number;
  /** The initramfs box of the same architecture (its kernel and initrd boot the system disk). */
  initramfsBox: () => Promise<InstalledBox>;
  /** Runs a shell script in a VM of the initramfs box with a disk attached (the foreign second stage). */
  runWithDisk: (disk: string, script: string, output: PassThrough) => Promise<number>;
}

const fail = (message: string) => new BoxbuildError('boxUnavailable', message);

/** The Debian mirror apt uses here (so boxes are made from the same place as everything else). */
export async function debianMirror(): Promise<string> {
  const texts = await Promise.all(['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].map((f) => readFile(f, 'utf8').catch(() => '')));
  const deb822 = /^URIs:\s*(\S+)/m.exec(texts[0]!);
  const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(texts[1]!);
  return (deb822?.[1] ?? oneLine?.[1] ?? 'http://deb.debian.org/debian').replace(/\/$/, '');
}

async function sha256File(path: string): Promise<ManifestFile> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { name: path.slice(path.lastIndexOf('/') + 1), sha256: hash.digest('hex'), size };
}

/** The foreign-architecture second stage, run as root in a VM of the target architecture. */
const SECOND_STAGE = `set -e
modprobe -a virtio_blk crc32c_generic ext4
mount /dev/vda /mnt
status=0
chroot /mnt /debootstrap/debootstrap --second-stage || status=$?
[ "$status" = 0 ] || tail -n 15 /mnt/debootstrap/debootstrap.log
rm -f /mnt/var/cache/apt/archives/*.deb /mnt/etc/ssh/ssh_host_*
umount /mnt
exit $status
`;

/**
 * The root file system: debootstrap (minbase and the packages), on the host for the host's
 * architecture; for a foreign one only its first stage runs here and the second stage runs inside
 * a VM of that architecture, so the host needs no binfmt emulation. Root is needed for debootstrap.
 */
async function makeRootDisk(options: SystemBoxOptions, work: string, packages: string[]): Promise<string> {
  const { arch, log, signal } = options;
  const native = arch === hostArch();
  const root = join(work, 'root');
  const mirror = await debianMirror();
  log(`debootstrap bookworm (${arch}) from ${mirror} with ${packages.join(', ')}${native ? '' : '; second stage in an emulated VM'}`);
  await mustRun('debootstrap', 'debootstrap', [
    '--variant=minbase',
    `--include=${packages.join(',')}`,
    `--arch=${debianArch(arch)}`,
    ...(native ? [] : ['--foreign']),
    'bookworm',
    root,
    mirror,
  ], { signal });
  await writeFile(join(root, 'etc/hostname'), 'boxbuild\n');
  // Every run makes its own SSH host keys (the SSH channel pins them); none is baked into the box.
  await mustRun('removing the SSH host keys', 'sh', ['-c', 'rm -f "$1"/etc/ssh/ssh_host_*', 'sh', root], { signal });
  // The downloaded packages: not needed in the box, but the foreign second stage installs from them.
  if (native) await mustRun('removing the downloaded packages', 'find', [join(root, 'var/cache/apt/archives'), '-name', '*.deb', '-delete'], { signal });
  const raw = join(work, 'system.raw');
  await mustRun('mkfs.ext4', 'mkfs.ext4', ['-q', '-F', '-L', 'boxbuild-root', '-d', root, raw, `${options.diskSizeMiB ?? 8192}M`], { signal });
  await rm(root, { recursive: true, force: true });
  if (!native) {
    const output = new PassThrough();
    const lines: string[] = [];
    output.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    const status = await options.runWithDisk(raw, SECOND_STAGE, output);
    if (status !== 0) throw fail(`debootstrap's second stage failed in the ${arch} VM (${status}): ${lines.slice(-6).join(' / ')}`);
  }
  return raw;
}

/**
 * Makes a `debian-system` box: a Debian bookworm root file system on a qcow2 disk, booted by the
 * kernel and initramfs of the `debian` box (whose init mounts the disk and starts the agent there).
 * When only boxbuild's guest files changed, the existing disk is kept and the kernel and initrd renewed.
 */
export async function makeDebianSystemBox(options: SystemBoxOptions): Promise<InstalledBox> {
  const { name, cacheRoot, arch } = options;
  if (process.getuid?.() !== 0) {
    throw fail(`making ${name} runs debootstrap, which needs root: run "sudo BOXBUILD_CACHE_DIR=${cacheRoot} boxbuild box make ${name}"`);
  }
  const packages = [...new Set([...SYSTEM_PACKAGES, ...(options.packages ?? [])])].sort();
  const recipe = `${packages.join(',')} ${options.diskSizeMiB ?? 8192}M`;
  const base = await options.initramfsBox();
  const previous = await readInstalled(cacheRoot, name, arch);
  const work = await freshWorkDir(cacheRoot, name, arch, 'make-');
  try {
    const staging = join(work, 'box');
    await mkdir(staging);
    const disk = join(staging, 'system.qcow2');
    if (previous?.manifest.files.system && previous.manifest.sources.recipe === recipe) {
      await link(join(previous.dir, previous.manifest.files.system.name), disk);
    } else {
      const raw = await makeRootDisk(options, work, packages);
      await mustRun('qemu-img convert', 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { signal: options.signal });
      await rm(raw, { force: true });
    }
    for (const file of ['kernel', 'initrd'] as const) await copyFile(join(base.dir, base.manifest.files[file].name), join(staging, file));
    const manifest: BoxManifest = {
      name,
      arch,
      version: `bookworm, kernel ${base.manifest.version}`,
      files: { kernel: base.manifest.files.kernel, initrd: base.manifest.files.initrd, system: await sha256File(disk) },
      sources: { recipe, kernel: base.manifest.version, 'boxbuild-guest': await guestFilesDigest() },
    };
    return await installVersion(cacheRoot, staging, manifest);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
