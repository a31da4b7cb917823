import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { TEST_CACHE } from './env.js';

/** An xfs root made from `root` (xfsprogs 6.1 has no --rootdir: a prototype file lists it, its files in the image owned by root). */
async function mkfsXfs(root: string, raw: string): Promise<void> {
  const lines = ['/dev/null', '0 0', 'd--755 0 0'];
  const walk = (dir: string, depth: number) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        lines.push(`${' '.repeat(depth)}${entry.name} d--755 0 0`);
        walk(path, depth + 1);
        lines.push(`${' '.repeat(depth)}$`);
      } else lines.push(`${' '.repeat(depth)}${entry.name} ---644 0 0 ${path}`);
    }
  };
  walk(root, 1);
  lines.push('$');
  writeFileSync(`${raw}.proto`, `${lines.join('\n')}\n`);
  await execa('truncate', ['-s', '320M', raw]);
  await execa('mkfs.xfs', ['-q', '-p', `${raw}.proto`, raw]);
}

/**
 * A qcow2 image that exec --image boots: one file system (ext4 unless said) on the whole disk with
 * os-release and, in /boot (unless `withKernel` is false), the aarch64 debian box's kernel and initrd
 * (whose init runs the agent in the initramfs). ext4 leaves the disk's first KiB unused: it holds `head`; when there is none, its
 * 512-byte clusters stay unallocated in the qcow2, so that a backing file shows through there.
 */
export async function bootableImage(dir: string, name: string, head = '', fs: 'ext4' | 'xfs' | 'btrfs' = 'ext4', withKernel = true): Promise<string> {
  const root = join(dir, `${name}.root`);
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'boot'));
  copyFileSync('/etc/os-release', join(root, 'etc/os-release'));
  const box = join(TEST_CACHE, 'boxes/debian/aarch64/current');
  if (withKernel) {
    copyFileSync(join(box, 'kernel'), join(root, 'boot/vmlinuz-1'));
    copyFileSync(join(box, 'initrd'), join(root, 'boot/initrd.img-1'));
  }
  const raw = join(dir, `${name}.raw`);
  if (fs === 'ext4') await execa('mkfs.ext4', ['-q', '-d', root, raw, '64M']);
  if (fs === 'btrfs') {
    await execa('truncate', ['-s', '256M', raw]);
    await execa('mkfs.btrfs', ['-q', '--rootdir', root, raw]);
  }
  if (fs === 'xfs') await mkfsXfs(root, raw);
  if (head) await execa('dd', [`of=${raw}`, 'conv=notrunc', 'status=none'], { input: head });
  const image = join(dir, `${name}.qcow2`);
  await execa('qemu-img', ['convert', '-S', '512', '-O', 'qcow2', '-o', 'cluster_size=512', raw, image]);
  return image;
}
