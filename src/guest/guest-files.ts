import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/* What boxbuild puts into every box it makes, and the digest that tells a box made from other versions of it. */

const GUEST_FILES = fileURLToPath(new URL('../../src/guest/files/', import.meta.url));

/**
 * Kernel modules the box carries: its devices, every sharing backend, and the root file systems of
 * the disk images it prepares (box import, exec --image). init loads the devices' modules; the
 * agent loads a file system's modules when a share needs them.
 */
export const GUEST_MODULES = ['virtio_pci', 'virtio_mmio', 'virtio_console', 'virtio_rng', 'virtio_blk', 'virtio_net', 'crc32c_generic', 'ext4', 'xfs', 'btrfs', '9pnet_virtio', '9p', 'fuse', 'virtiofs'];

/**
 * Packages whose files go into the box: busybox for everything, sshfs (and its libraries) for the
 * sshfs backend, util-linux's script (bsdutils) for commands on a terminal (busybox has none).
 */
export const USERLAND_PACKAGES = ['busybox-static', 'sshfs', 'bsdutils', 'libfuse3-3', 'libglib2.0-0', 'libpcre2-8-0', 'libc6'];

/** Files boxbuild puts into the guest; a box made from other versions of them is outdated. */
export const GUEST_FILE_NAMES = ['init', 'agent', 'build', 'kiwi-box', 'kiwi.yml'] as const;

/** Where a guest file is (a container mounts it from there). */
export const guestFilePath = (name: string) => join(GUEST_FILES, name);

export const guestFile = (name: string) => readFile(guestFilePath(name));

/** Raised whenever the way a box is put together changes, so that boxes made before are made again. */
const BOX_LAYOUT = 3;

/** Digest of boxbuild's guest files, module list and box layout, recorded in the box as sources["boxbuild-guest"]. */
export async function guestFilesDigest(): Promise<string> {
  const hash = createHash('sha256').update(`${BOX_LAYOUT} ${GUEST_MODULES.join(' ')} ${USERLAND_PACKAGES.join(' ')}`);
  for (const name of GUEST_FILE_NAMES) hash.update(await guestFile(name));
  return hash.digest('hex');
}
