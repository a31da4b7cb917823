import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Arch, debianArch, debianTriplet } from '../box/arch.js';
import { type BoxManifest, type InstalledBox, type ManifestFile, freshWorkDir, installVersion } from '../box/cache.js';
import { PRIVATE_FILE } from '../box/modes.js';
import { BoxbuildError } from '../errors.js';
import { type DebianPackage, downloadPackages, resolveMetaPackage, unpackPackage } from './debian-packages.js';
import { InitramfsBuilder, addDynamicProgram } from './initramfs.js';
import { extractVmlinux, moduleClosure } from './kernel.js';
import { GUEST_FILE_NAMES, GUEST_MODULES, USERLAND_PACKAGES, guestFile, guestFilesDigest } from './guest-files.js';
import { mustRun, runTool } from './make-tool.js';

function manifestFile(name: string, data: Buffer): ManifestFile {
  return { name, sha256: createHash('sha256').update(data).digest('hex'), size: data.length };
}

async function checkDepmod(signal?: AbortSignal): Promise<void> {
  if ((await runTool('depmod', ['--version'], { signal })).failed) throw new BoxbuildError('boxUnavailable', 'depmod not found: install the "kmod" package');
}

/**
 * Adds the guest modules (with their dependencies) and depmod's indexes of exactly those modules:
 * the text modules.dep for busybox modprobe, the .bin indexes for kmod's (system boxes).
 */
async function addModules(builder: InitramfsBuilder, root: string, work: string, signal?: AbortSignal): Promise<void> {
  const [release] = await readdir(join(root, 'lib/modules'));
  if (!release) throw new BoxbuildError('boxUnavailable', 'the kernel package holds no kernel modules');
  await checkDepmod(signal);
  await mustRun('depmod', 'depmod', ['--basedir', root, release], { signal });
  const modulesDir = join(root, 'lib/modules', release);
  const builtin = await readFile(join(modulesDir, 'modules.builtin'), 'utf8');
  const modules = moduleClosure(await readFile(join(modulesDir, 'modules.dep'), 'utf8'), builtin, GUEST_MODULES);
  const own = join(work, 'modules');
  const ownDir = join(own, 'lib/modules', release);
  for (const module of modules) {
    await mkdir(dirname(join(ownDir, module)), { recursive: true });
    await copyFile(join(modulesDir, module), join(ownDir, module));
  }
  for (const index of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) await copyFile(join(modulesDir, index), join(ownDir, index));
  await mustRun('depmod', 'depmod', ['--basedir', own, release], { signal });
  for (const file of (await readdir(ownDir, { recursive: true })).sort()) {
    const path = join(ownDir, file);
    if ((await stat(path)).isFile()) builder.file(`lib/modules/${release}/${file}`, await readFile(path));
  }
}

/**
 * Makes the `debian` box: Debian's generic kernel (uncompressed on x86_64, for a fast PVH boot), and
 * an initramfs holding busybox, sshfs, the guest modules and boxbuild's guest agent.
 */
export async function makeDebianBox(options: { name: string; cacheRoot: string; arch: Arch; log: (line: string) => void; signal?: AbortSignal }): Promise<InstalledBox> {
  const { name, cacheRoot, arch, log, signal } = options;
  const work = await freshWorkDir(cacheRoot, name, arch, 'make-');
  const began = performance.now();
  // Each step on a line of its own, with the time so far: making takes half a minute or more.
  const step = (what: string) => log(`${name} (${arch}): ${what} [${((performance.now() - began) / 1000).toFixed(1)} s]`);
  try {
    const debArch = debianArch(arch);
    const kernelPackage = await resolveMetaPackage(`linux-image-${debArch}:${debArch}`, 'linux-image-', signal);
    log(`making box ${name} (${arch}) from ${kernelPackage}, ${USERLAND_PACKAGES.join(', ')}`);
    const debs = join(work, 'debs');
    await mkdir(debs);
    step(`downloading ${USERLAND_PACKAGES.length + 1} packages`);
    const packages = await downloadPackages([kernelPackage, ...USERLAND_PACKAGES].map((pkg) => `${pkg}:${debArch}`), debs, signal);
    step('unpacking them');
    const root = join(work, 'root');
    for (const pkg of packages) await unpackPackage(pkg, root, signal);
    step('building the initramfs: busybox, sshfs, script, kernel modules, the agent');

    const builder = new InitramfsBuilder();
    for (const dir of ['proc', 'sys', 'dev', 'root', 'tmp', 'run', 'bin', 'sbin', 'usr/bin', 'usr/sbin']) builder.dir(dir);
    builder.file('bin/busybox', await readFile(join(root, 'bin/busybox')), 0o755).symlink('bin/sh', 'busybox');
    for (const program of ['/usr/bin/sshfs', '/usr/bin/script']) await addDynamicProgram(builder, root, program, debianTriplet(arch));
    await addModules(builder, root, work, signal);
    builder.file('etc/passwd', Buffer.from('root:x:0:0:root:/root:/bin/sh\n')).file('etc/group', Buffer.from('root:x:0:\n'));
    builder.file('init', await guestFile('init'), 0o755);
    for (const file of GUEST_FILE_NAMES.filter((f) => f !== 'init')) builder.file(`usr/lib/boxbuild/${file}`, await guestFile(file), 0o755);

    const [vmlinuz] = (await readdir(join(root, 'boot'))).filter((file) => file.startsWith('vmlinuz-'));
    const initrd = builder.build();
    const staging = join(work, 'box');
    await mkdir(staging);
    step(arch === 'x86_64' ? 'extracting the uncompressed kernel' : 'copying the kernel');
    if (arch === 'x86_64') await extractVmlinux(join(root, 'boot', vmlinuz!), join(staging, 'kernel'));
    else await copyFile(join(root, 'boot', vmlinuz!), join(staging, 'kernel'));
    const kernel = await readFile(join(staging, 'kernel'));
    await writeFile(join(staging, 'initrd'), initrd, { mode: PRIVATE_FILE });
    const kernelDeb = packages[0]!;
    const manifest: BoxManifest = {
      name,
      arch,
      version: kernelDeb.version,
      files: { kernel: manifestFile('kernel', kernel), initrd: manifestFile('initrd', initrd) },
      sources: {
        ...Object.fromEntries(packages.map((pkg: DebianPackage) => [pkg.name, pkg.version])),
        'boxbuild-guest': await guestFilesDigest(),
      },
    };
    const installed = await installVersion(cacheRoot, staging, manifest);
    step('made');
    return installed;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
