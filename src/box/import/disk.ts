import { lstat, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { BoxbuildError } from '../../errors.js';
import type { Arch } from '../arch.js';

/*
 * A disk image that boots its own kernel: a VM of the `debian` box, with the image as /dev/vda and
 * /found shared, finds its root file system and its kernel and initrd, and puts boxbuild's init and
 * agent into the root. The image's initrd then mounts that root and starts boxbuild's init there.
 */

/** Finds root, kernel and initrd (ext2/3/4 partitions, or the whole disk), installs the guest files. */
export const PREPARE_DISK = `
fail() { echo "$*" >&2; exit 3; }
modprobe -a virtio_blk crc32c_generic ext4 xfs btrfs || fail "cannot load the disk drivers"
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
[ -n "$root" ] || fail "no partition of the image holds a root file system (/etc/os-release) that boxbuild can mount (ext2, ext3, ext4, xfs, btrfs)"
# With KERNEL_GIVEN (box import --kernel), the host has the kernel and initrd: none is looked for.
if [ -z "\${KERNEL_GIVEN:-}" ]; then
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
fi
# The root file system's UUID (busybox has no blkid): 16 bytes of its superblock, at 1024 + 0x68
# for ext2/3/4, at 0x20 for xfs, at 64 KiB + 0x20 (the fsid) for btrfs.
case "$(awk -v dev="$root" '$1 == dev { print $3 }' /proc/mounts)" in
  ext*) offset=1128 ;;
  xfs) offset=32 ;;
  btrfs) offset=65568 ;;
  *) fail "the root file system on $root is none that boxbuild knows the UUID of" ;;
esac
uuid=$(dd if="$root" bs=1 skip="$offset" count=16 2>/dev/null | od -An -tx1 | tr -d ' \\n')
echo "$uuid" | sed 's/^\\(.\\{8\\}\\)\\(.\\{4\\}\\)\\(.\\{4\\}\\)\\(.\\{4\\}\\)/\\1-\\2-\\3-\\4-/' >/found/root
mkdir -p /image/usr/lib/boxbuild
cp /init /image/usr/lib/boxbuild/init && cp /usr/lib/boxbuild/agent /usr/lib/boxbuild/build /image/usr/lib/boxbuild/ || fail "cannot write to the image's root file system"
sync
umount /boot-part 2>/dev/null
umount /image
echo "root $root, kernel \${kernel:-given}, initrd \${initrd:-given}"
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

/**
 * What the preparing VM found: its kernel, initrd (unless `given`) and the root file system's UUID
 * (checked: the VM is not trusted).
 */
export async function foundFiles(found: string, image: string, given?: { kernel: string; initrd: string }): Promise<{ kernel: string; initrd: string; uuid: string }> {
  const kernel = given?.kernel ?? (await guestWritten(join(found, 'kernel'), 'kernel'));
  const initrd = given?.initrd ?? (await guestWritten(join(found, 'initrd'), 'initrd'));
  const uuid = (await readFile(await guestWritten(join(found, 'root'), 'root file system'), 'utf8')).trim();
  if (!/^[0-9A-Fa-f-]{8,36}$/.test(uuid)) throw new BoxbuildError('boxUnavailable', `${image}: its root file system has no UUID to boot it by`);
  return { kernel, initrd, uuid };
}
