import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { TEST_CACHE } from './env.js';
import { ociLayout } from './oci-image.js';

/** The busybox applets the test roots link (a root with a shell and the tools the tests use). */
const APPLETS = ['sh', 'cat', 'ls', 'stat', 'id', 'env', 'mkdir', 'echo', 'uname', 'test', 'printf', 'rm', 'touch', 'cp', 'tar', 'sleep', 'pwd', 'grep', 'head', 'wc', 'gzip', 'gunzip'];

/**
 * A small real root file system in `dir`: the static busybox of the `debian` box of `arch` (from
 * its initramfs) as /bin/busybox with /bin/sh and other applets linked to it, /etc/os-release, a
 * file owned by uid 1234 and a set-uid one (the test runs as root), and `files` (path → content).
 */
export async function busyboxRoot(dir: string, arch: string, files: Record<string, string> = {}): Promise<string> {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  const initrd = join(TEST_CACHE, 'boxes/debian', arch, 'current/initrd');
  await execa('sh', ['-c', 'cpio -i --quiet --to-stdout bin/busybox <"$1" >"$2"', 'sh', initrd, join(dir, 'bin/busybox')]);
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  for (const applet of APPLETS) symlinkSync('busybox', join(dir, 'bin', applet));
  // merged /usr, as Debian has it: /usr/bin/env etc. reach the same applets
  mkdirSync(join(dir, 'usr'));
  symlinkSync('../bin', join(dir, 'usr/bin'));
  mkdirSync(join(dir, 'etc'));
  writeFileSync(join(dir, 'etc/os-release'), 'ID=boxbuild-test\nNAME="boxbuild test root"\n');
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  mkdirSync(join(dir, 'root'));
  writeFileSync(join(dir, 'owned'), 'owned by 1234\n');
  chownSync(join(dir, 'owned'), 1234, 1234);
  writeFileSync(join(dir, 'setuid'), '#!/bin/sh\n');
  chmodSync(join(dir, 'setuid'), 0o4755);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

/** A tarball of a root directory, as a user makes one (GNU tar, numeric owners); `compress`: tar's -z, -J or --zstd. */
export async function rootTarball(root: string, file: string, compress = ''): Promise<string> {
  await execa('tar', ['--numeric-owner', ...(compress ? [compress] : []), '-C', root, '-cf', file, '.']);
  return file;
}

/** A plain tar of a directory's content, as bytes (owners as they are). */
export async function tarOf(dir: string): Promise<Buffer> {
  return Buffer.from((await execa('tar', ['--numeric-owner', '-C', dir, '-cf', '-', '.'], { encoding: 'buffer', stripFinalNewline: false })).stdout);
}

/**
 * An OCI layout of two layers over a busybox root: the top one deletes a file (whiteout), empties a
 * directory (opaque) and adds files. LAYERED_CHECK, run in a box of it, prints "new\nadded\n0".
 */
export async function layeredImage(dir: string): Promise<string> {
  const base = await busyboxRoot(join(dir, 'base'), 'x86_64', { 'etc/removed': 'removed\n', 'opaque/old': 'old\n' });
  const top = join(dir, 'top');
  mkdirSync(join(top, 'etc'), { recursive: true });
  mkdirSync(join(top, 'opaque'));
  writeFileSync(join(top, 'etc/.wh.removed'), '');
  writeFileSync(join(top, 'opaque/.wh..wh..opq'), '');
  writeFileSync(join(top, 'opaque/new'), 'new\n');
  writeFileSync(join(top, 'added'), 'added\n');
  return ociLayout(join(dir, 'layout'), [await tarOf(base), await tarOf(top)], { arch: 'amd64', gzip: [true, false] });
}

export const LAYERED_CHECK = 'ls /opaque; cat /added; test -e /etc/removed && echo removed is there; ls -a /etc | grep -c wh || true';
