import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { Header } from 'tar';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { unpackKernelTarball, unpackLimit } from '../../src/box/tarball.js';

/** A tar archive of the given members, written block by block (so that unsafe paths stay as they are). */
function tarOf(members: { path: string; data?: Buffer; type?: 'File' | 'SymbolicLink'; linkpath?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { path, data = Buffer.alloc(0), type = 'File', linkpath } of members) {
    const header = new Header({ path, type, linkpath, size: type === 'File' ? data.length : 0, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === 'File') blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}

/** The limit of a 1 GiB box's small tarball: 256 MiB. */
const LIMIT = unpackLimit(1024, 4096);

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let dir: string;
let out: string;
const kernel = randomBytes(70_000);
const initrd = randomBytes(5_000);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'boxbuild-tar-'));
  out = join(dir, 'out');
  await execa('mkdir', [out]);
});

afterEach(() => rm(dir, { recursive: true, force: true }));

async function write(name: string, data: Buffer): Promise<string> {
  await writeFile(join(dir, name), data);
  return join(dir, name);
}

describe('kernel tarballs', () => {
  const members = [
    { path: 'Box.x86_64-1.0.kernel', data: kernel },
    { path: 'Box.x86_64-1.0.initrd', data: initrd },
    { path: 'Box.x86_64-1.0.append', data: Buffer.from('quiet') },
  ];

  test.each([
    ['Box.x86_64-Kernel.tar.gz', (tar: Buffer) => gzipSync(tar)],
    ['Box.x86_64-Kernel.tar.xz', async (tar: Buffer) => (await execa('xz', ['-c'], { input: tar, encoding: 'buffer', stripFinalNewline: false })).stdout],
    ['Box.x86_64-Kernel.tar.zst', async (tar: Buffer) => (await execa('zstd', ['-c'], { input: tar, encoding: 'buffer', stripFinalNewline: false })).stdout],
  ])('%s: the kernel and the initrd are unpacked and hashed, nothing else', async (name, compress) => {
    const tarball = await write(name, Buffer.from(await compress(tarOf(members))));
    const files = await unpackKernelTarball(tarball, name, out, LIMIT);
    expect(files).toEqual({
      kernel: { name: 'Box.x86_64-1.0.kernel', sha256: sha256(kernel), size: kernel.length },
      initrd: { name: 'Box.x86_64-1.0.initrd', sha256: sha256(initrd), size: initrd.length },
    });
    expect((await readdir(out)).sort()).toEqual(['Box.x86_64-1.0.initrd', 'Box.x86_64-1.0.kernel']);
    expect(await readFile(join(out, 'Box.x86_64-1.0.kernel'))).toEqual(kernel);
  });

  test.each([['../escape'], ['/etc/escape'], ['boot/../../escape.kernel']])('a member "%s" gets the whole tarball refused', async (path) => {
    const tarball = await write('k.tar.gz', gzipSync(tarOf([...members, { path, data: Buffer.from('x') }])));
    await expect(unpackKernelTarball(tarball, 'k.tar.gz', out, LIMIT)).rejects.toThrow(`kernel tarball k.tar.gz has a member that points outside its directory ("${path}"); it was refused`);
    expect(await readdir(dir)).toEqual(['k.tar.gz', 'out']);
  });

  test('a link member pointing outside is refused', async () => {
    const tarball = await write('k.tar', tarOf([{ path: 'x.kernel', type: 'SymbolicLink', linkpath: '../../etc/passwd' }, ...members]));
    await expect(unpackKernelTarball(tarball, 'k.tar', out, LIMIT)).rejects.toThrow('points outside its directory');
  });

  test('a tarball without an initrd, or with two kernels, is refused', async () => {
    const noInitrd = await write('a.tar', tarOf([members[0]!]));
    await expect(unpackKernelTarball(noInitrd, 'a.tar', out, LIMIT)).rejects.toThrow('kernel tarball a.tar has no *.initrd member; it was refused');
    const twoKernels = await write('b.tar', tarOf([...members, { path: 'other.kernel', data: kernel }]));
    await expect(unpackKernelTarball(twoKernels, 'b.tar', out, LIMIT)).rejects.toThrow('has more than one *.kernel member');
  });

  test('a corrupt tarball is refused', async () => {
    const tarball = await write('c.tar.xz', randomBytes(4096));
    await expect(unpackKernelTarball(tarball, 'c.tar.xz', out, LIMIT)).rejects.toThrow(/cannot unpack c.tar.xz: xz: /);
  });

  test('a tarball whose members add up to more than the limit is refused when the header says so, before the member is read', async () => {
    const tarball = await write('k.tar', tarOf([{ path: 'Box.initrd', data: initrd }, { path: 'Box.kernel', data: kernel }]));
    const limit = { bytes: 64 << 10, why: 'the test\'s limit' };
    await expect(unpackKernelTarball(tarball, 'k.tar', out, limit)).rejects.toThrow('kernel tarball k.tar unpacks to more than 64.0 KiB, the test\'s limit; it was refused');
    expect(await readdir(out)).toEqual(['Box.initrd']); // the staging directory it was in is removed by its caller
  });

  test('a tarball that tar gives up on in the middle of a member (a gzip bomb) is refused; the unpacking ends', async () => {
    const tarball = await write('k.tar.gz', gzipSync(tarOf([{ path: 'Box.kernel', data: Buffer.alloc(100 << 20) }, ...members.slice(1)]), { level: 9 }));
    await expect(unpackKernelTarball(tarball, 'k.tar.gz', out, LIMIT)).rejects.toThrow(/^kernel tarball k\.tar\.gz is not a valid tar archive \(max decompression ratio exceeded: .*\); it was refused$/);
  });
});

describe('how much a kernel tarball may unpack to', () => {
  test.each([
    [1024, 3_700_000, 256 * 2 ** 20, /^the most a tarball of 3\.53 MiB may unpack to \(16 times its size, at least 256\.0 MiB\)$/],
    [8192, 100 * 2 ** 20, 1600 * 2 ** 20, /16 times its size/],
    [128, 3_700_000, 128 * 2 ** 20, /^the box's memory, which its kernel and initrd are loaded into$/],
  ])('a box of %i MiB, a tarball of %i bytes: %i bytes', (memoryMiB, size, bytes, why) => {
    expect(unpackLimit(memoryMiB, size)).toEqual({ bytes, why: expect.stringMatching(why) });
  });
});
