import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { TEST_CACHE } from './env.js';

/**
 * A qcow2 image that exec --image boots: one ext4 file system on the whole disk with os-release and,
 * in /boot, the aarch64 debian box's kernel and initrd (whose init runs the agent in the initramfs).
 * ext4 leaves the disk's first KiB unused: it holds `head`; when there is none, its 512-byte clusters
 * stay unallocated in the qcow2, so that a backing file shows through there.
 */
export async function bootableImage(dir: string, name: string, head = ''): Promise<string> {
  const root = join(dir, `${name}.root`);
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'boot'));
  copyFileSync('/etc/os-release', join(root, 'etc/os-release'));
  const box = join(TEST_CACHE, 'boxes/debian/aarch64/current');
  copyFileSync(join(box, 'kernel'), join(root, 'boot/vmlinuz-1'));
  copyFileSync(join(box, 'initrd'), join(root, 'boot/initrd.img-1'));
  const raw = join(dir, `${name}.raw`);
  await execa('mkfs.ext4', ['-q', '-d', root, raw, '64M']);
  if (head) await execa('dd', [`of=${raw}`, 'conv=notrunc', 'status=none'], { input: head });
  const image = join(dir, `${name}.qcow2`);
  await execa('qemu-img', ['convert', '-S', '512', '-O', 'qcow2', '-o', 'cluster_size=512', raw, image]);
  return image;
}

