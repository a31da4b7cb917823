import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { type Arch, debianArch } from '../box/arch.js';
import { type BoxManifest, type InstalledBox, freshWorkDir, installVersion, readInstalled } from '../box/cache.js';
import { BoxbuildError } from '../errors.js';
import { manifestFileOf } from '../box/hash.js';
import { describeCacheUse, packageCacheDir } from '../package-cache/store.js';
import { startEgressProxy } from '../network/egress.js';
import { DEBIAN_MIRRORS, PackageCache } from '../package-cache/cache.js';
import { guestProxyUrl } from '../network/guest.js';
import type { Share } from '../sharing/types.js';
import { downloadPackages, unpackPackage } from './debian-packages.js';
import { guestFilesDigest } from './guest-files.js';
import { mustRun } from './make-tool.js';

/** Packages every system box has: compilers, sshfs for the sshfs backend, kmod for the agent, sshd for the SSH channel. */
export const SYSTEM_PACKAGES = ['build-essential', 'sshfs', 'kmod', 'iproute2', 'openssh-server'];

/**
 * What debootstrap needs in the `debian` box besides busybox: itself, perl (its package parser), and
 * dash and coreutils' chroot: busybox's shell and chroot run busybox's own applets (its dpkg) in
 * place of the target's programs.
 */
const DEBOOTSTRAP_TOOLS = ['debootstrap', 'perl-base', 'libcrypt1', 'dash'];

export interface SystemBoxOptions {
  name: string;
  cacheRoot: string;
  arch: Arch;
  log: (line: string) => void;
  /** Stops the downloads and the VM that runs debootstrap (Ctrl-C). */
  signal?: AbortSignal;
  /** The box's packages besides SYSTEM_PACKAGES (the registry's and `--package`). */
  packages?: string[];
  /** Size of the root file system (`--disk-size`); the qcow2 holds only what is used. */
  diskSizeMiB?: number;
  /** The initramfs box of the same architecture (its kernel and initrd boot the system disk). */
  initramfsBox: () => Promise<InstalledBox>;
  /** Runs a shell script as root in a VM of the initramfs box, with networking, the raw disk as /dev/vda and the shares mounted. */
  runWithDisk: (disk: string, script: string, shares: Share[], output: PassThrough) => Promise<number>;
}

const fail = (message: string) => new BoxbuildError('boxUnavailable', message);

/** The Debian mirror apt uses here (so boxes are made from the same place as everything else). */
export async function debianMirror(): Promise<string> {
  const texts = await Promise.all(['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].map((f) => readFile(f, 'utf8').catch(() => '')));
  const deb822 = /^URIs:\s*(\S+)/m.exec(texts[0]!);
  const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(texts[1]!);
  return (deb822?.[1] ?? oneLine?.[1] ?? 'http://deb.debian.org/debian').replace(/\/$/, '');
}


/** The kernel package the `debian` box was made from, and its version (in the box's sources). */
function kernelOf(base: InstalledBox): { name: string; version: string; release: string } {
  const name = Object.keys(base.manifest.sources).find((source) => source.startsWith('linux-image-'));
  if (!name) throw fail(`box ${base.manifest.name} records no kernel package; make it again (boxbuild box make ${base.manifest.name})`);
  return { name, version: base.manifest.sources[name]!, release: name.slice('linux-image-'.length) };
}

/** debootstrap's options for the box: the same for downloading on the host and installing in the VM. */
const debootstrapOptions = (packages: string[], debArch: string) => ['--variant=minbase', `--arch=${debArch}`, `--include=${packages.join(',')}`];

/**
 * The script run as root in the VM: debootstrap (both stages, natively in the VM of the target
 * architecture) from the packages downloaded on the host onto the empty file system on /dev/vda,
 * then the modules of the box's kernel.
 */
function installScript(options: string[], mirror: string, release: string): string {
  return `set -e
cp -dR /make/tools/. /
rm -f /usr/sbin/chroot && cp /make/coreutils/usr/sbin/chroot /usr/sbin/chroot
modprobe -a virtio_blk crc32c_generic ext4
mount -o noatime /dev/vda /mnt
# dpkg syncs every file it unpacks, each a journal commit in the emulated VM: minutes. This disk is
# thrown away unless the install finishes, so it need not be crash-safe meanwhile.
mkdir -p /mnt/etc/dpkg/dpkg.cfg.d
echo force-unsafe-io >/mnt/etc/dpkg/dpkg.cfg.d/boxbuild-make
status=0
# busybox's dpkg-deb applet cannot extract every package: ar and tar can.
dash /usr/sbin/debootstrap --extractor=ar --unpack-tarball=/make/debs.tar ${options.join(' ')} bookworm /mnt ${mirror} || status=$?
if [ "$status" != 0 ]; then
  tail -n 15 /mnt/debootstrap/debootstrap.log 2>/dev/null
  exit "$status"
fi
cp -dR /make/kernel/lib/modules /mnt/lib/
chroot /mnt depmod -a ${release}
echo boxbuild >/mnt/etc/hostname
rm /mnt/etc/dpkg/dpkg.cfg.d/boxbuild-make
sync
rm -f /mnt/var/cache/apt/archives/*.deb /mnt/etc/ssh/ssh_host_*
umount /mnt
`;
}

/** Keeps the stanzas of a Packages file whose package is one of `names`. */
export function trimPackages(text: string, names: Set<string>): string {
  return text
    .split(/\n\n+/)
    .filter((stanza) => names.has(/^Package: (\S+)/m.exec(stanza)?.[1] ?? ''))
    .map((stanza) => `${stanza.trim()}\n\n`)
    .join('');
}

/**
 * Makes debootstrap's tarball fit for the VM: the package index trimmed to the packages it holds
 * (debootstrap's perl reads the whole index for every pre-dependency, minutes per read in an emulated
 * VM), without the download's log (it would replace the install's log while debootstrap writes it),
 * owned by root, and uncompressed.
 */
async function repackForVm(tarball: string, dir: string, output: string, signal?: AbortSignal): Promise<void> {
  await mkdir(dir);
  await mustRun('unpacking the packages', 'tar', ['-xzf', tarball, '-C', dir], { signal });
  await rm(tarball);
  const debs = await readdir(join(dir, 'var/cache/apt/archives'));
  const names = new Set(debs.filter((file) => file.endsWith('.deb')).map((file) => file.slice(0, file.indexOf('_'))));
  const lists = join(dir, 'var/lib/apt/lists');
  for (const list of (await readdir(lists)).filter((file) => file.endsWith('_Packages'))) {
    await writeFile(join(lists, list), trimPackages(await readFile(join(lists, list), 'utf8'), names));
  }
  await rm(join(dir, 'debootstrap/debootstrap.log'), { force: true });
  await mustRun('packing the packages', 'tar', ['--owner=0', '--group=0', '-cf', output, '-C', dir, 'var', 'debootstrap'], { signal });
  await rm(dir, { recursive: true, force: true });
}

/** Passes on debootstrap's progress: its first line of each kind ("I: Retrieving …", "I: Configuring …"). */
function progressLines(output: PassThrough, log: (line: string) => void): string[] {
  const lines: string[] = [];
  let kind = '';
  output.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      lines.push(line);
      const verb = /^I: (\w+)/.exec(line)?.[1];
      if (verb && verb !== kind) log(`debootstrap: ${line.slice(3)}`);
      kind = verb ?? kind;
    }
  });
  return lines;
}

/**
 * The root file system, made without root on the host: debootstrap downloads the packages here
 * (`--make-tarball` needs no root), through the box's package cache; an empty ext4 image (mkfs as
 * any user) is filled by debootstrap run as root inside a VM of the `debian` box of the target
 * architecture (so foreign architectures need no binfmt emulation either), with the modules of the
 * box's kernel.
 */
async function makeRootDisk(options: SystemBoxOptions, work: string, packages: string[], base: InstalledBox): Promise<string> {
  const { arch, log, signal } = options;
  const debArch = debianArch(arch);
  const kernel = kernelOf(base);
  const mirror = await debianMirror();
  const bootstrap = debootstrapOptions(packages, debArch);
  const make = join(work, 'make');
  const debs = join(work, 'debs');
  for (const dir of [debs, join(make, 'tools'), join(make, 'coreutils'), join(make, 'kernel')]) await mkdir(dir, { recursive: true });
  log(`debootstrap bookworm (${arch}) from ${mirror}, with ${packages.join(', ')}: downloading`);
  // The host's own debootstrap downloads (no guest): the proxy reaches what the host does.
  const cache = await PackageCache.open(join(options.cacheRoot, 'packages'), packageCacheDir(options.cacheRoot, options.name, arch), [...DEBIAN_MIRRORS, mirror]);
  const proxy = await startEgressProxy({ listen: { token: randomBytes(16).toString('hex') }, mode: 'full', allow: [], cache });
  try {
    await mustRun('debootstrap --make-tarball', 'debootstrap', [...bootstrap, `--make-tarball=${join(work, 'debs.tgz')}`, 'bookworm', join(work, 'download'), mirror], {
      signal,
      env: { http_proxy: proxy.url! },
    });
    await repackForVm(join(work, 'debs.tgz'), join(work, 'tarball'), join(make, 'debs.tar'), signal);
  } finally {
    await proxy.close();
  }
  log(describeCacheUse(cache.stats, proxy.passedBytes));
  // debootstrap is "Architecture: all": apt has no candidate for it with an architecture.
  const tools = DEBOOTSTRAP_TOOLS.map((name) => (name === 'debootstrap' ? name : `${name}:${debArch}`));
  for (const pkg of await downloadPackages(tools, debs, signal)) await unpackPackage(pkg, join(make, 'tools'), signal);
  // dash's /bin/sh link would replace busybox's (and cannot: busybox cp keeps existing links).
  for (const link of ['bin/sh', 'usr/bin/sh']) await rm(join(make, 'tools', link), { force: true });
  const [coreutils] = await downloadPackages([`coreutils:${debArch}`], debs, signal);
  await unpackPackage(coreutils!, join(make, 'coreutils'), signal);
  const [kernelDeb] = await downloadPackages([`${kernel.name}:${debArch}=${kernel.version}`], debs, signal).catch((error: unknown) => {
    throw fail(`the kernel of box ${base.manifest.name} (${kernel.name} ${kernel.version}) is no longer in the archive: make that box again (boxbuild box make ${base.manifest.name} --arch ${arch}), then this one (${error instanceof Error ? error.message : String(error)})`);
  });
  await unpackPackage(kernelDeb!, join(make, 'kernel'), signal);
  await rm(debs, { recursive: true, force: true });
  const raw = join(work, 'system.raw');
  await mustRun('mkfs.ext4', 'mkfs.ext4', ['-q', '-F', '-L', 'boxbuild-root', '-E', 'root_owner=0:0', raw, `${options.diskSizeMiB ?? 8192}M`], { signal });
  log(`debootstrap: installing in a VM of box ${base.manifest.name} (${arch})`);
  const output = new PassThrough();
  const lines = progressLines(output, log);
  const status = await options.runWithDisk(raw, installScript(bootstrap, guestProxyUrl(mirror), kernel.release), [{ tag: 'make', hostPath: make, guestPath: '/make', readOnly: true }], output);
  const errors = lines.filter((line) => line.startsWith('E: '));
  if (status !== 0) throw fail(`debootstrap failed in the ${arch} VM (${status}): ${[...errors, ...lines.slice(-4)].join(' / ')}`);
  await rm(make, { recursive: true, force: true });
  return raw;
}

/**
 * Makes a system box (`debian-system`, `debian-kiwi`): a Debian bookworm root file system on a qcow2
 * disk, with the modules of the `debian` box's kernel, booted by that box's kernel and initramfs
 * (whose init mounts the disk and starts the agent, or the KIWI build, there). When only boxbuild's
 * guest files changed, the existing disk is kept and the kernel and initrd renewed.
 */
export async function makeDebianSystemBox(options: SystemBoxOptions): Promise<InstalledBox> {
  const { name, cacheRoot, arch } = options;
  const packages = [...new Set([...SYSTEM_PACKAGES, ...(options.packages ?? [])])].sort();
  const base = await options.initramfsBox();
  const kernel = kernelOf(base);
  const recipe = `${packages.join(',')} ${options.diskSizeMiB ?? 8192}M ${kernel.name} ${kernel.version}`;
  const previous = await readInstalled(cacheRoot, name, arch);
  const work = await freshWorkDir(cacheRoot, name, arch, 'make-');
  try {
    const staging = join(work, 'box');
    await mkdir(staging);
    const disk = join(staging, 'system.qcow2');
    if (previous?.manifest.files.system && previous.manifest.sources.recipe === recipe) {
      await link(join(previous.dir, previous.manifest.files.system.name), disk);
    } else {
      const raw = await makeRootDisk(options, work, packages, base);
      await mustRun('qemu-img convert', 'qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { signal: options.signal });
      await rm(raw, { force: true });
    }
    for (const file of ['kernel', 'initrd'] as const) await copyFile(join(base.dir, base.manifest.files[file].name), join(staging, file));
    const manifest: BoxManifest = {
      name,
      arch,
      version: `bookworm, kernel ${base.manifest.version}`,
      files: { kernel: base.manifest.files.kernel, initrd: base.manifest.files.initrd, system: await manifestFileOf(disk) },
      sources: { recipe, kernel: base.manifest.version, 'boxbuild-guest': await guestFilesDigest() },
    };
    return await installVersion(cacheRoot, staging, manifest);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
