import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { type InstalledBox, readInstalled } from '../box/cache.js';
import { BoxbuildError } from '../errors.js';
import { downloadPackages } from '../guest/debian-packages.js';
import { InitramfsBuilder } from '../guest/initramfs.js';

/**
 * A fake openSUSE Leap box that follows the KIWI box contract, for tests and the benchmark (the
 * published boxes are gigabytes and need a network): Debian's real bzImage, the `debian` box's
 * initrd (busybox, sshfs, the virtio and sharing modules) with this init and a fake kiwi-ng
 * appended, and an empty System.qcow2, under the published file names.
 */

/** init: reads the box variables and kiwi="…" exactly as the published boxes' run_kiwi does. */
const INIT = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
[ -e /bin/mount ] || /bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
mount -t tmpfs tmpfs /tmp
modprobe -a virtio_pci virtio_console virtio_blk virtio_net
finish() {
  sync
  grep -q kiwi-no-halt /proc/cmdline || poweroff -f
  while :; do sleep 3600; done
}
# the boxes' import_box_variables
eval export $(tr " " "\\n" </proc/cmdline | grep "=_" | sed -e "s@=_@=@" -e "s@_\\$@@")
find_port() {
  tries=0
  while [ "$tries" -lt 300 ]; do
    for dir in /sys/class/virtio-ports/*; do
      [ "$(cat "$dir/name" 2>/dev/null)" = "$1" ] && echo "/dev/\${dir##*/}" && return 0
    done
    tries=$((tries + 1))
    usleep 10000
  done
  return 1
}
mount_tag() {
  mkdir -p "$2"
  case "$sharing_backend" in
    virtiofs) modprobe virtiofs && mount -t virtiofs "$1" "$2" ;;
    sshfs)
      modprobe fuse
      port=$(find_port "org.boxbuild.sftp.$1") || return 1
      sshfs -f -o passive,idmap=none,max_conns=1 :/share "$2" 0<>"$port" 1>&0 2>"/tmp/sshfs-$1.log" &
      tries=0
      until [ "$(stat -c %d "$2")" != "$(stat -c %d "$2/..")" ]; do
        tries=$((tries + 1))
        [ "$tries" -gt 500 ] && return 1
        usleep 10000
      done ;;
    *) modprobe -a 9pnet_virtio 9p && mount -t 9p -o trans=virtio,version=9p2000.L "$1" "$2" ;;
  esac
}
mount_tag kiwidescription /description && mount_tag kiwibundle /bundle || { echo "fixture box: cannot mount the shares"; finish; }
[ -z "$custom_mount" ] || mount_tag custompath "$custom_mount" || { echo "fixture box: cannot mount $custom_mount"; finish; }
echo 1 >/bundle/result.code
options=$(cut -f2 -d\\" /proc/cmdline)
kiwi-ng --logfile /bundle/result.log $options --description /description --target-dir /result
echo $? >/bundle/result.code
umount /bundle /description 2>/dev/null
finish
`;

/** The fake kiwi-ng: records what it was given and saw, and ends as the description says. */
const FAKE_KIWI = `#!/bin/sh
printf '%s\\n' "$@" >/bundle/kiwi-args
cat /proc/cmdline >/bundle/cmdline
grep -E ' (/description|/bundle|$custom_mount) ' /proc/mounts >/bundle/mounts
[ -z "$custom_mount" ] || cat "$custom_mount/marker" >/bundle/custom-marker
echo "fake kiwi-ng $*" >"$2"
echo the-box-wrote-here | dd of=/dev/vda conv=notrunc 2>/dev/null
if [ -e /description/poweroff ]; then
  rm -f /bundle/result.code
  sync
  poweroff -f
fi
exit "$(cat /description/exit-code 2>/dev/null || echo 0)"
`;

export const FIXTURE_PREFIX = 'Leap-Box.x86_64';

const exists = (path: string) => access(path).then(() => true, () => false);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The Debian kernel package the `debian` box was made from. */
export const kernelPackageOf = (debian: InstalledBox): string => Object.keys(debian.manifest.sources).find((name) => name.startsWith('linux-image-'))!;

/** Debian's bzImage of the kernel the `debian` box was made from (its modules are in that box's initrd). */
export async function debianBzImage(kernelPackage: string, work: string): Promise<Buffer> {
  const [deb] = await downloadPackages([`${kernelPackage}:amd64`], work);
  const script = 'dpkg-deb --fsys-tarfile "$1" | tar -xO --wildcards "./boot/vmlinuz-*"';
  const { stdout } = await execa('sh', ['-c', script, 'sh', deb!.file], { encoding: 'buffer', stripFinalNewline: false, maxBuffer: 1 << 28 });
  return Buffer.from(stdout);
}

/**
 * Makes the fixture's published files (with `.sha256` sidecars) once per `debian` box version and
 * fixture script, in `<cacheRoot>/kiwi-fixture/`; returns that directory.
 */
export async function makeKiwiFixture(cacheRoot: string): Promise<string> {
  const debian = await readInstalled(cacheRoot, 'debian', 'x86_64');
  if (!debian) throw new BoxbuildError('boxUnavailable', `the kiwi fixture needs the debian box in ${cacheRoot} (boxbuild box fetch debian)`);
  const key = sha256(Buffer.from(`${basename(debian.dir)}\n${INIT}\n${FAKE_KIWI}`)).slice(0, 16);
  const dir = join(cacheRoot, 'kiwi-fixture', key);
  if (await exists(dir)) return dir;
  const work = await mkdtemp(join(cacheRoot, 'kiwi-fixture-'));
  try {
    const kernelPackage = kernelPackageOf(debian);
    const kernel = await debianBzImage(kernelPackage, work);
    const appended = new InitramfsBuilder().file('init', Buffer.from(INIT), 0o755).file('usr/bin/kiwi-ng', Buffer.from(FAKE_KIWI), 0o755).build();
    const initrd = Buffer.concat([await readFile(join(debian.dir, debian.manifest.files.initrd.name)), appended]);
    const out = join(work, 'out');
    await mkdir(out);
    const member = `${FIXTURE_PREFIX}-1.0.0-Kernel-Build1.1`;
    await writeFile(join(work, `${member}.kernel`), kernel);
    await writeFile(join(work, `${member}.initrd`), initrd);
    const tarball = `${FIXTURE_PREFIX}-Kernel.tar.xz`;
    await execa('sh', ['-c', 'tar -C "$1" -cf - "$2.kernel" "$2.initrd" | xz -1 -T0 >"$3"', 'sh', work, member, join(out, tarball)]);
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', join(out, `${FIXTURE_PREFIX}-System.qcow2`), '64M']);
    await writeFile(join(out, `${FIXTURE_PREFIX}-System.json`), `${JSON.stringify({ image: 'fixture', packages: [kernelPackage] })}\n`);
    for (const name of [tarball, `${FIXTURE_PREFIX}-System.qcow2`]) {
      await writeFile(join(out, `${name}.sha256`), `${sha256(await readFile(join(out, name)))}  ${name}\n`);
    }
    await mkdir(join(cacheRoot, 'kiwi-fixture'), { recursive: true });
    await rename(out, dir).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error; // made by a concurrent run
    });
    return dir;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The fixture's files: name → contents, to publish under a server's `/images/`. */
export async function fixtureFiles(dir: string): Promise<Map<string, Buffer>> {
  const names = await readdir(dir);
  return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(dir, name))] as const)));
}

/** A registry that points box `leap` at the fixture served from `url` (small VM: TCG on a small host). */
export function fixtureRegistry(url: string): string {
  const leap = {
    description: 'fixture of the openSUSE Leap KIWI box',
    protocol: 'kiwi',
    memoryMiB: 512,
    cpus: 1,
    console: 'hvc0',
    mirrors: [url],
    files: {
      kernelTarball: { url: `${FIXTURE_PREFIX}-Kernel.tar.xz`, sha256: 'sidecar' },
      system: { url: `${FIXTURE_PREFIX}-System.qcow2`, sha256: 'sidecar' },
      packages: { url: `${FIXTURE_PREFIX}-System.json` },
    },
    arches: { x86_64: { cmdline: 'root=/dev/vda1 rd.plymouth=0' } },
  };
  return `${JSON.stringify({ boxes: { leap } }, null, 2)}\n`;
}
