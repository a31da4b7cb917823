import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { type Arch, debianArch } from '../box/arch.js';
import { type BoxManifest, type InstalledBox, type ManifestFile, installVersion } from '../box/cache.js';
import { BoxbuildError } from '../errors.js';
import { type CpioEntry, writeCpio } from './cpio.js';
import { downloadPackages, resolveMetaPackage, unpackPackage } from './debian-packages.js';
import { extractVmlinux, moduleClosure } from './kernel.js';

const GUEST_FILES = fileURLToPath(new URL('../../src/guest/files/', import.meta.url));

/**
 * Kernel modules the box carries: its devices and every sharing backend. init loads the
 * devices' modules; the agent loads a file system's modules when a share needs them.
 */
export const GUEST_MODULES = [
  'virtio_pci',
  'virtio_mmio',
  'virtio_console',
  'virtio_rng',
  'virtio_blk',
  'virtio_net',
  '9pnet_virtio',
  '9p',
  'fuse',
  'virtiofs',
];

async function findDepmod(): Promise<string> {
  for (const candidate of ['depmod', '/usr/sbin/depmod', '/sbin/depmod']) {
    const result = await execa(candidate, ['--version'], { reject: false });
    if (result.exitCode === 0) return candidate;
  }
  throw new BoxbuildError('boxUnavailable', 'depmod not found: install the "kmod" package');
}

async function kernelImage(arch: Arch, vmlinuz: Buffer): Promise<Buffer> {
  return arch === 'x86_64' ? extractVmlinux(vmlinuz) : vmlinuz;
}

function manifestFile(name: string, data: Buffer): ManifestFile {
  return { name, sha256: createHash('sha256').update(data).digest('hex'), size: data.length };
}

async function guestFile(name: string): Promise<Buffer> {
  return readFile(join(GUEST_FILES, name));
}

/** Files boxbuild puts into the guest; a box made from other versions of them is outdated. */
const GUEST_FILE_NAMES = ['init', 'agent', 'build'];

/** Digest of boxbuild's guest files and module list, recorded in the box as sources["boxbuild-guest"]. */
export async function guestFilesDigest(): Promise<string> {
  const hash = createHash('sha256').update(GUEST_MODULES.join(' '));
  for (const name of GUEST_FILE_NAMES) hash.update(await guestFile(name));
  return hash.digest('hex');
}

/**
 * Makes the `debian` box: Debian's generic kernel (uncompressed for a fast boot), and an
 * initramfs holding busybox, the guest modules in dependency order and the guest agent.
 */
export async function makeDebianBox(options: { name: string; cacheRoot: string; arch: Arch; log: (line: string) => void }): Promise<InstalledBox> {
  const { name, cacheRoot, arch, log } = options;
  const tmpRoot = join(cacheRoot, 'tmp');
  await mkdir(tmpRoot, { recursive: true });
  const work = await mkdtemp(join(tmpRoot, 'make-debian-'));
  try {
    const debArch = debianArch(arch);
    const kernelPackage = await resolveMetaPackage(`linux-image-${debArch}:${debArch}`, 'linux-image-');
    log(`making box ${name} (${arch}) from ${kernelPackage} and busybox-static`);
    const debs = join(work, 'debs');
    await mkdir(debs);
    const [kernelDeb, busyboxDeb] = await downloadPackages([`${kernelPackage}:${debArch}`, `busybox-static:${debArch}`], debs);
    const root = join(work, 'root');
    await unpackPackage(kernelDeb!, root);
    await unpackPackage(busyboxDeb!, root);

    const [release] = await readdir(join(root, 'lib/modules'));
    if (!release) throw new BoxbuildError('boxUnavailable', `${kernelPackage} holds no kernel modules`);
    const depmod = await findDepmod();
    await execa(depmod, ['--basedir', root, release]);
    const modulesDir = join(root, 'lib/modules', release);
    const modules = moduleClosure(
      await readFile(join(modulesDir, 'modules.dep'), 'utf8'),
      await readFile(join(modulesDir, 'modules.builtin'), 'utf8'),
      GUEST_MODULES,
    );

    const entries: CpioEntry[] = [];
    const dirs = new Set<string>();
    const addDir = (path: string) => {
      const parts = path.split('/').filter(Boolean);
      for (let i = 1; i <= parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (!dirs.has(dir)) entries.push({ type: 'dir', path: dir });
        dirs.add(dir);
      }
    };
    for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'root', 'etc/boxbuild']) addDir(dir);
    entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(join(root, 'bin/busybox')), mode: 0o755 });
    entries.push({ type: 'symlink', path: 'bin/sh', target: 'busybox' });
    for (const module of modules) {
      const path = `lib/modules/${release}/${module}`;
      addDir(path.slice(0, path.lastIndexOf('/')));
      entries.push({ type: 'file', path, data: await readFile(join(modulesDir, module)) });
    }
    // busybox modprobe reads modules.dep; keep just the lines of the modules the box carries.
    const modulesDep = (await readFile(join(modulesDir, 'modules.dep'), 'utf8'))
      .split('\n')
      .filter((line) => modules.includes(line.slice(0, line.indexOf(':'))))
      .join('\n');
    entries.push({ type: 'file', path: `lib/modules/${release}/modules.dep`, data: Buffer.from(`${modulesDep}\n`) });
    entries.push({ type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') });
    entries.push({ type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\n') });
    entries.push({ type: 'file', path: 'init', data: await guestFile('init'), mode: 0o755 });
    addDir('usr/lib/boxbuild');
    for (const name of GUEST_FILE_NAMES.filter((file) => file !== 'init')) {
      entries.push({ type: 'file', path: `usr/lib/boxbuild/${name}`, data: await guestFile(name), mode: 0o755 });
    }

    const [vmlinuz] = (await readdir(join(root, 'boot'))).filter((name) => name.startsWith('vmlinuz-'));
    const kernel = await kernelImage(arch, await readFile(join(root, 'boot', vmlinuz!)));
    const initrd = writeCpio(entries);
    const staging = join(work, 'box');
    await mkdir(staging);
    await writeFile(join(staging, 'kernel'), kernel);
    await writeFile(join(staging, 'initrd'), initrd);
    const manifest: BoxManifest = {
      name,
      arch,
      version: kernelDeb!.version,
      files: { kernel: manifestFile('kernel', kernel), initrd: manifestFile('initrd', initrd) },
      sources: {
        [kernelDeb!.name]: kernelDeb!.version,
        [busyboxDeb!.name]: busyboxDeb!.version,
        'boxbuild-guest': await guestFilesDigest(),
      },
    };
    await writeFile(join(staging, 'box.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    return await installVersion(cacheRoot, staging, manifest);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
