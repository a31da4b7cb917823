import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { InstalledBox } from '../../box/cache.js';
import type { BoxEntry } from '../../box/registry.js';
import type { DiskScriptRunner } from '../../box/resolve.js';
import { BoxbuildError, usageError } from '../../errors.js';
import { Child, lastWords } from '../../util/child.js';
import { type Podman, findPodman, podmanArgv, podmanCommand, podmanEnvironment, podmanMust } from './podman.js';

/*
 * A box as a container image: the root file system on its system disk, read in a VM of the `debian`
 * box (nothing of a box's disk is mounted on the host) and streamed as a tar into `podman import`.
 * The image is named after the disk's content, so it is made once per box version and reused while
 * the version stays; making it removes the images of the box's older versions.
 */

/** What runs in the VM: the disk (a bare ext4 file system) mounted read-only, its tree on stdout. */
const EXPORT_ROOT = `set -e
modprobe -a virtio_blk crc32c_generic ext4
mkdir -p /mnt/root
mount -t ext4 -o ro,noload /dev/vda /mnt/root
cd /mnt/root
tar -c -f - .
`;

/** The boxes whose system disk holds a root file system a container can run: system boxes and imported root file systems. */
export function containerDisk(box: BoxEntry, installed: InstalledBox): string {
  const { system } = installed.manifest.files;
  const rootfs = box.make === 'debian-system' || (box.make === 'import' && installed.manifest.sources['import-kind'] === 'rootfs');
  if (!system || !rootfs) {
    throw usageError(`--container runs system boxes (debian-system, debian-kiwi) and boxes imported from root file systems or OCI images; box "${box.name}" ${system ? 'boots a disk image of its own' : 'has no root file system'}: run it in a VM (without --container)`);
  }
  return join(installed.dir, system.name);
}

/** The repository of a box's images (a box name may hold what an image name may not). */
const repository = (box: string) => `localhost/boxbuild/${box.toLowerCase().replace(/[^a-z0-9._-]/g, '-')}`;

/** The image of this box version. */
export const imageName = (installed: InstalledBox) => `${repository(installed.manifest.name)}:${installed.manifest.arch}-${installed.manifest.files.system!.sha256.slice(0, 16)}`;

/** The images podman has of a box, of these architectures. */
async function boxImages(podman: Podman, box: string, arches: string[], signal?: AbortSignal): Promise<string[]> {
  const listed = await podmanMust(podman, ['images', '--noheading', '--format', '{{.Repository}}:{{.Tag}}', repository(box)], 'list images', { signal });
  return listed.split('\n').filter((name) => arches.some((arch) => name.startsWith(`${repository(box)}:${arch}-`)));
}

/** Removes the images of a box removed from the cache (box remove); none when podman is not there. */
export async function removeBoxImages(box: string, arches: string[], signal?: AbortSignal): Promise<number> {
  const podman = await findPodman(signal).catch(() => undefined);
  const images = podman ? await boxImages(podman, box, arches, signal) : [];
  // An image a container still uses stays (podman refuses).
  if (images.length > 0) await podmanCommand(podman!, ['rmi', ...images], { signal });
  return images.length;
}

export interface ImageRequest {
  podman: Podman;
  installed: InstalledBox;
  /** The box's system disk (containerDisk). */
  disk: string;
  cacheRoot: string;
  runScript: DiskScriptRunner;
  notice: (line: string) => void;
  signal: AbortSignal;
}

/** The image of the box version, made first when podman has none. */
export async function boxImage(request: ImageRequest): Promise<string> {
  const { podman, installed, disk, signal } = request;
  const image = imageName(installed);
  if ((await podmanCommand(podman, ['image', 'exists', image], { signal })).exitCode === 0) return image;
  request.notice(`making the container image of box ${installed.manifest.name} (${installed.manifest.arch}, once per box version): its root file system, read in a VM`);
  const older = await boxImages(podman, installed.manifest.name, [installed.manifest.arch], signal);
  const importer = new Child(...podmanArgv(podman, ['import', '--quiet', '-', image]), { stdio: ['pipe', 'pipe', 'pipe'], signal, env: podmanEnvironment() });
  importer.process.stdin!.on('error', () => {}); // podman import ended early: its own status tells why
  const errors: string[] = [];
  const status = await request.runScript({
    arch: installed.manifest.arch,
    cacheRoot: request.cacheRoot,
    disk,
    format: 'qcow2',
    readOnly: true,
    script: EXPORT_ROOT,
    shares: [],
    output: importer.process.stdin!,
    errors: collector(errors),
    log: request.notice,
    signal,
  });
  if (status !== 0) {
    await importer.stop();
    throw new BoxbuildError('containerUnavailable', `cannot read the root file system of box ${installed.manifest.name}: ${errors.join(' / ') || `exit status ${status}`}`);
  }
  importer.process.stdin!.end();
  const imported = await importer.ended;
  if (imported.exitCode !== 0) throw new BoxbuildError('containerUnavailable', `podman could not import the root file system of box ${installed.manifest.name}: ${lastWords(imported)}`);
  const stale = older.filter((name) => name !== image);
  // An image a container of another run still uses stays (podman refuses); the next make tries again.
  if (stale.length > 0) await podmanCommand(podman, ['rmi', ...stale], { signal });
  return image;
}

/** A writable that keeps the last lines written to it. */
function collector(lines: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      lines.splice(0, Math.max(0, lines.length - 4));
      done();
    },
  });
}
