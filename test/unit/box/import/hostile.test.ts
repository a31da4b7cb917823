import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { readImportSource } from '../../../../src/box/import/source.js';
import { BoxbuildError, type ExitCodeName } from '../../../../src/errors.js';
import { processesOf, tempDir } from '../../../helpers/temp.js';
import { type ImageLayer, MEDIA, OciLayout, compress, descriptor, digestOf, elfHeader, fileHeader, padded, paxOf, rawHeader, rootEntries, sha256, tarDirectory, tarOf } from './fixtures.js';

/*
 * Hostile and broken sources, one attack each: every one is refused with one line of the right
 * kind (usage, exit 2, for what is no known format or needs --arch; boxUnavailable, exit 69, for a
 * known format with bad content), keeping its cause.
 */

let dir: string;
let count = 0;
const path = (name: string) => join(dir, `${++count}-${name}`);
const read = (source: string, options: Parameters<typeof readImportSource>[2] = {}) => readImportSource(source, tempDir('bb-import-work-'), options);

/** Expects `promise` to fail with one line of `kind` matching `pattern`. */
async function refused(promise: Promise<unknown>, kind: ExitCodeName, pattern: RegExp): Promise<BoxbuildError> {
  const error = await promise.then(
    () => {
      throw new Error('it was not refused');
    },
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(BoxbuildError);
  expect((error as Error).message).toMatch(pattern);
  expect((error as Error).message).not.toContain('\n');
  expect((error as BoxbuildError).kind).toBe(kind);
  if (kind === 'boxUnavailable') expect((error as Error).cause).toBeDefined();
  return error as BoxbuildError;
}

/** A tarball of `entries` (gzip unless told), as a file. */
function tarball(entries: Parameters<typeof tarOf>[0], how: Parameters<typeof compress>[1] = 'gzip'): string {
  const file = path('image.tar');
  writeFileSync(file, compress(tarOf(entries), how));
  return file;
}

/** An OCI layout of one image of `layers` (a root file system first, unless `layers` says otherwise). */
function layout(layers: ImageLayer[], change?: (layout: OciLayout, manifest: ReturnType<OciLayout['image']>) => void): string {
  const oci = new OciLayout(path('layout'));
  const manifest = oci.image(layers);
  oci.index([manifest]);
  change?.(oci, manifest);
  return oci.dir;
}

const root: ImageLayer = { tar: tarOf(rootEntries()), compression: 'gzip' };
const layer = (entries: Parameters<typeof tarOf>[0]): ImageLayer => ({ tar: tarOf(entries), compression: 'gzip' });

beforeAll(() => {
  dir = tempDir();
});

describe('paths', () => {
  test('an entry with a ".." component', async () => {
    await refused(read(tarball([...rootEntries(), { path: 'etc/../../../etc/cron.d/x', data: 'x' }])), 'boxUnavailable', /: entry "etc\/..\/..\/..\/etc\/cron.d\/x" has a ".." component$/);
  });

  test('an entry through a symlink of an earlier layer', async () => {
    const source = layout([root, layer([{ path: 'host', type: 'SymbolicLink', linkpath: '/' }]), layer([{ path: 'host/etc/passwd', data: 'x' }])]);
    await refused(read(source), 'boxUnavailable', /: layer 3 \(sha256:[0-9a-f]{64}\): entry "host\/etc\/passwd" goes through the symlink "host" \(-> \/\)$/);
  });

  test('an entry through a symlink earlier in the same tarball', async () => {
    await refused(read(tarball([{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'etc/passwd', data: 'x' }])), 'boxUnavailable', /goes through the symlink "etc"/);
  });

  test('a hard link to a file outside the image', async () => {
    await refused(read(tarball([...rootEntries(), { path: 'shadow', type: 'Link', linkpath: '../../../etc/shadow' }])), 'boxUnavailable', /hard link "shadow" -> target "..\/..\/..\/etc\/shadow" has a ".." component/);
    await refused(read(tarball([...rootEntries(), { path: 'shadow', type: 'Link', linkpath: '/etc/shadow' }])), 'boxUnavailable', /hard link "shadow" has an absolute target/);
    await refused(read(tarball([...rootEntries(), { path: 'shadow', type: 'Link', linkpath: 'etc/shadow' }])), 'boxUnavailable', /links to "etc\/shadow", which is not in the image before it/);
  });

  test('a whiteout that escapes its directory, or goes through a symlink', async () => {
    await refused(read(layout([root, layer([{ path: 'etc/.wh...' }])])), 'boxUnavailable', /layer 2 .*: whiteout "etc\/.wh..." names ".."$/);
    const through = layout([root, layer([{ path: 'host', type: 'SymbolicLink', linkpath: '/host' }]), layer([{ path: 'host/.wh.passwd' }])]);
    await refused(read(through), 'boxUnavailable', /layer 3 .*: entry "host\/.wh.passwd" goes through the symlink "host"/);
  });

  test('an entry of a kind busybox tar does not extract alike', async () => {
    await refused(read(tarball([...rootEntries(), { path: 'dump', type: 'GNUDumpDir' }])), 'boxUnavailable', /the tar reads differently with the guest's tar \(an entry of type "D"\)/);
    const sparse = tarOf([...rootEntries(), { path: 'sparse' }]);
    sparse[sparse.length - 1024 - 512 + 156] = 'S'.charCodeAt(0);
    const header = sparse.subarray(sparse.length - 1024 - 512, sparse.length - 1024);
    header.fill(0x20, 148, 156);
    header.write(`${header.reduce((sum, byte) => sum + byte, 0).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const file = path('sparse.tar');
    writeFileSync(file, sparse);
    await refused(read(file), 'boxUnavailable', /entry "sparse" is of a kind boxbuild does not import \(SparseFile\)/);
  });
});

describe('tars that busybox tar reads otherwise than the checks', () => {
  /** A rootfs tar with `crafted` (raw blocks) at its end, as a plain tarball. */
  function crafted(...blocks: Buffer[]): string {
    const file = path('crafted.tar');
    writeFileSync(file, Buffer.concat([tarOf(rootEntries(), false), ...blocks, Buffer.alloc(1024)]));
    return file;
  }

  test('a symlink with a data block that busybox reads as the next header', async () => {
    const source = crafted(rawHeader({ name: 'link', flag: '2', size: 512, link: 'x' }), rawHeader({ name: 'etc/cron.d/smuggled' }));
    await refused(read(source), 'boxUnavailable', /entry "link" reads differently with the guest's tar \(512 bytes of data, which busybox does not read for a SymbolicLink\)/);
  });

  test('a hard link with a data block', async () => {
    await refused(read(crafted(rawHeader({ name: 'b', flag: '1', size: 512, link: 'etc/passwd' }), rawHeader({ name: 'smuggled' }))), 'boxUnavailable', /entry "b" reads differently .*busybox does not read for a Link/);
  });

  test('a GNU header with a name prefix, which busybox prepends', async () => {
    await refused(read(crafted(rawHeader({ name: 'passwd', magic: 'ustar  \0', prefix: 'bin' }))), 'boxUnavailable', /the tar reads differently with the guest's tar \(a GNU header with a name prefix\)/);
  });

  test('a pax path with a newline, which the Parser skips and busybox reads', async () => {
    const pax = Buffer.from(`${' path=bin/evil\nx\n'.length + 2} path=bin/evil\nx\n`);
    await refused(read(crafted(rawHeader({ name: 'pax', flag: 'x', size: pax.length }), padded(pax), rawHeader({ name: 'harmless' }))), 'boxUnavailable', /not strictly "LEN KEY=VALUE" records/);
  });

  test('a pax size, which busybox does not read', async () => {
    const pax = paxOf({ size: '0' });
    const source = crafted(rawHeader({ name: 'pax', flag: 'x', size: pax.length }), padded(pax), rawHeader({ name: 'file', size: 512 }), rawHeader({ name: 'smuggled' }));
    await refused(read(source), 'boxUnavailable', /entry "file" reads differently with the guest's tar \(a pax size, which busybox does not read\)/);
  });

  test('a global pax header with a size', async () => {
    const pax = paxOf({ size: '512' });
    await refused(read(crafted(rawHeader({ name: 'g', flag: 'g', size: pax.length }), padded(pax), rawHeader({ name: 'file' }))), 'boxUnavailable', /a global pax header that sets a path, a link target or a size/);
  });

  test('a name that is not UTF-8, which the Parser decodes lossily', async () => {
    await refused(read(crafted(rawHeader({ name: Buffer.from([0x62, 0x69, 0xff]) }))), 'boxUnavailable', /a name that is not UTF-8/);
  });

  test('long names and link targets in pax and GNU headers read alike are fine', async () => {
    const long = `usr/share/${'d'.repeat(120)}/file`;
    const pax = paxOf({ path: long, linkpath: `../${'t'.repeat(150)}` });
    const gnu = Buffer.from(`usr/lib/${'g'.repeat(120)}\0`);
    const source = crafted(
      rawHeader({ name: 'pax', flag: 'x', size: pax.length }),
      padded(pax),
      rawHeader({ name: long.slice(0, 99), flag: '2', link: 'x' }),
      rawHeader({ name: '././@LongLink', flag: 'L', size: gnu.length, magic: 'ustar  \0' }),
      padded(gnu),
      rawHeader({ name: 'short', magic: 'ustar  \0', size: 3 }),
      padded(Buffer.from('abc')),
    );
    expect(await read(source)).toMatchObject({ kind: 'rootfs', files: 12 + 5 });
  });
});

describe('truncated and corrupt streams', () => {
  const full = tarOf(rootEntries());

  test.each([
    ['gzip', /gzip: unexpected end of file/],
    ['xz', /xz: .*(Unexpected end of input|truncated)/i],
    ['zstd', /zstd: .*(truncated|premature end|unexpected end)/i],
  ] as const)('a truncated %s stream', async (how, message) => {
    const bytes = compress(full, how);
    const file = path(`cut.tar.${how}`);
    writeFileSync(file, bytes.subarray(0, bytes.length >> 1));
    await refused(read(file), 'boxUnavailable', message);
  });

  test('a tar cut in a member', async () => {
    const file = path('cut.tar');
    writeFileSync(file, full.subarray(0, 4096 + 100));
    await refused(read(file), 'boxUnavailable', /not a valid tar archive \(Truncated input/);
  });

  test('a tar cut between members, without its end blocks', async () => {
    const file = path('cut.tar');
    writeFileSync(file, tarOf(rootEntries(), false));
    await refused(read(file), 'boxUnavailable', /the tar archive is truncated \(it ends without its end-of-archive blocks\)$/);
  });

  test('a layer compressed twice', async () => {
    await refused(read(layout([{ tar: compress(tarOf(rootEntries()), 'gzip'), compression: 'gzip' }])), 'boxUnavailable', /layer 1 .*: the tar is compressed twice/);
  });

  test('a layer blob that does not match its digest', async () => {
    const source = layout([root, layer([{ path: 'etc/motd', data: 'hello' }])], (oci, manifest) => {
      const layers = JSON.parse(readFileSync(join(oci.dir, 'blobs', 'sha256', manifest.digest.slice(7)), 'utf8')).layers;
      const blob = join(oci.dir, 'blobs', 'sha256', layers[1].digest.slice(7));
      writeFileSync(blob, compress(tarOf([{ path: 'etc/motd', data: 'HELLO' }]), 'gzip'));
    });
    await refused(read(source), 'boxUnavailable', /layer 2 \(sha256:[0-9a-f]{64}\) does not match its digest/);
  });

  test('a manifest that does not match its digest', async () => {
    const source = layout([root], (oci, manifest) => {
      const file = join(oci.dir, 'blobs', 'sha256', manifest.digest.slice(7));
      writeFileSync(file, readFileSync(file, 'utf8').replace('"schemaVersion":2', '"schemaVersion":3'));
    });
    await refused(read(source), 'boxUnavailable', /the image manifest sha256:[0-9a-f]{64} does not match its digest/);
  });

  test('a layer whose uncompressed tar does not match its diff_id', async () => {
    const source = layout([root], (oci, manifest) => {
      const manifestFile = join(oci.dir, 'blobs', 'sha256', manifest.digest.slice(7));
      const doc = JSON.parse(readFileSync(manifestFile, 'utf8'));
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digestOf(Buffer.from('another tar'))] } }));
      doc.config = descriptor(MEDIA.config, config);
      oci.blob(config);
      oci.index([descriptor(MEDIA.manifest, oci.json(doc))]);
    });
    await refused(read(source), 'boxUnavailable', /layer 1 .*: its uncompressed tar does not match its diff_id/);
  });

  test('a Docker archive layer that does not match its diff_id', async () => {
    const archive = path('docker');
    mkdirSync(join(archive, 'l'), { recursive: true });
    writeFileSync(join(archive, 'l', 'layer.tar'), tarOf(rootEntries()));
    writeFileSync(join(archive, 'config.json'), JSON.stringify({ architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [digestOf(Buffer.from('x'))] } }));
    writeFileSync(join(archive, 'manifest.json'), JSON.stringify([{ Config: 'config.json', Layers: ['l/layer.tar'] }]));
    await refused(read(tarDirectory(archive, path('docker.tar'))), 'boxUnavailable', /layer 1 \(l\/layer.tar\): its uncompressed tar does not match its diff_id/);
  });

  test('a blob of a layout that is a symlink out of it', async () => {
    const outside = path('secret');
    writeFileSync(outside, 'secret');
    const source = layout([root], (oci) => {
      const manifests = JSON.parse(readFileSync(join(oci.dir, 'index.json'), 'utf8')).manifests;
      manifests.push({ ...descriptor(MEDIA.manifest, Buffer.from('secret')), platform: { architecture: 'arm64', os: 'linux' } });
      oci.index(manifests);
      symlinkSync(outside, join(oci.dir, 'blobs', 'sha256', sha256(Buffer.from('secret'))));
    });
    await refused(read(source, { arch: 'aarch64' }), 'boxUnavailable', /the image manifest sha256:[0-9a-f]{64} is a symlink out of the layout/);
  });
});

describe('JSON and limits', () => {
  test('a manifest that is not JSON', async () => {
    const source = layout([root], (oci) => oci.index([descriptor(MEDIA.manifest, Buffer.from('{"schemaVersion": 2,'))]));
    writeFileSync(join(source, 'blobs', 'sha256', sha256(Buffer.from('{"schemaVersion": 2,'))), '{"schemaVersion": 2,');
    await refused(read(source), 'boxUnavailable', /: the image manifest is not valid JSON \(/);
  });

  test('an index.json larger than 4 MiB', async () => {
    const source = layout([root]);
    writeFileSync(join(source, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [], padding: 'x'.repeat(5 << 20) }));
    await refused(read(source), 'boxUnavailable', /index.json is larger than 4 MiB/);
  });

  test('more than 256 layers', async () => {
    const source = layout([root], (oci) => {
      const config = oci.json({ architecture: 'amd64', os: 'linux' });
      const layers = Array.from({ length: 257 }, (_, at) => descriptor(MEDIA.layer, Buffer.from(`${at}`)));
      oci.index([descriptor(MEDIA.manifest, oci.json({ schemaVersion: 2, config: descriptor(MEDIA.config, config), layers }))]);
    });
    await refused(read(source), 'boxUnavailable', /the image has 257 layers; boxbuild imports at most 256/);
  });

  test('indexes nested too deep', async () => {
    const source = layout([root], (oci) => {
      let top = JSON.parse(readFileSync(join(oci.dir, 'index.json'), 'utf8')).manifests[0];
      for (let depth = 0; depth < 6; depth++) top = descriptor(MEDIA.index, oci.json({ schemaVersion: 2, manifests: [top] }));
      oci.index([top]);
    });
    await refused(read(source), 'boxUnavailable', /its indexes nest deeper than 4/);
  });
});

describe('formats', () => {
  test('a source that does not exist', async () => {
    await refused(read(path('missing.tar')), 'usage', /missing\.tar: no such file or directory$/);
  });

  test('an unknown format', async () => {
    const file = path('random.bin');
    writeFileSync(file, Buffer.from('just some text, no image of any kind\n'.repeat(40)));
    const error = await refused(read(file), 'usage', /^unknown image format: .*random\.bin \(expected a qcow2 or raw/);
    expect(error.exitCode).toBe(2);
  });

  test('a disk image of another format', async () => {
    const file = path('disk.vdi');
    execFileSync('qemu-img', ['create', '-q', '-f', 'vdi', file, '16M']);
    await refused(read(file), 'usage', /disk\.vdi is a VDI image; boxbuild opens raw and qcow2 images$/);
  });

  test('a Vagrant box of the virtualbox provider', async () => {
    const box = path('box');
    mkdirSync(box);
    writeFileSync(join(box, 'metadata.json'), JSON.stringify({ provider: 'virtualbox' }));
    writeFileSync(join(box, 'Vagrantfile'), '');
    writeFileSync(join(box, 'box.ovf'), '<xml/>');
    const file = path('vbox.box');
    execFileSync('tar', ['-C', box, '-czf', file, '.']);
    await refused(read(file), 'usage', /: it is a Vagrant box for the virtualbox provider; boxbuild imports Vagrant boxes of the libvirt provider \(qcow2\) only$/);
  });

  test('a qcow2 image with a backing file, given or in a Vagrant box', async () => {
    const base = path('base.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
    const overlay = path('overlay.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay]);
    const error = await refused(read(overlay), 'boxUnavailable', /overlay\.qcow2 names another file as its backing file \(.*base\.qcow2\); boxbuild opens only self-contained images$/);
    expect(error.exitCode).toBe(69);
    const box = path('box');
    mkdirSync(box);
    execFileSync('cp', [overlay, join(box, 'box.img')]);
    writeFileSync(join(box, 'metadata.json'), JSON.stringify({ provider: 'libvirt', format: 'qcow2' }));
    const file = path('overlay.box');
    execFileSync('tar', ['-C', box, '-cf', file, 'metadata.json', 'box.img']);
    await refused(read(file), 'boxUnavailable', /overlay\.box: its box\.img names another file as its backing file/);
  });
});

describe('missing programs', () => {
  /** Runs `task` with nothing on PATH. */
  async function withoutPrograms<T>(task: () => Promise<T>): Promise<T> {
    const path = process.env.PATH;
    process.env.PATH = tempDir();
    try {
      return await task();
    } finally {
      process.env.PATH = path;
    }
  }

  test('no skopeo for an image reference: a usage error naming Debian\'s package', async () => {
    await withoutPrograms(() => refused(read('docker://registry.invalid/image:latest'), 'usage', /^importing docker:\/\/registry.invalid\/image:latest needs skopeo: install Debian's "skopeo" package/));
  });

  test('no xz for a .tar.xz', async () => {
    const file = tarball(rootEntries(), 'xz');
    await withoutPrograms(() => refused(read(file), 'boxUnavailable', /image\.tar: decompressing it needs the "xz" program; please install it$/));
  });
});

describe('architectures', () => {
  test('--arch that contradicts the ELF header of /bin/sh', async () => {
    await refused(read(tarball(rootEntries()), { arch: 'aarch64' }), 'usage', /: it is a x86_64 image \(its \/bin\/sh\), not aarch64 as --arch says$/);
  });

  test('--arch that contradicts the image config', async () => {
    await refused(read(layout([root]), { arch: 'aarch64' }), 'usage', /: it is a x86_64 image \(its image config\), not aarch64 as --arch says$/);
  });

  test('an architecture boxbuild does not run', async () => {
    await refused(read(tarball(rootEntries(elfHeader(0x28)))), 'usage', /it is for 64-bit little-endian ELF machine 0x28 \(its \/bin\/sh\), which boxbuild does not run/);
  });

  test('no architecture to be told and no --arch', async () => {
    await refused(read(tarball([{ path: 'etc/hostname', data: 'x' }])), 'usage', /boxbuild cannot tell its architecture .*: name it with --arch$/);
  });
});

describe('aborts', () => {
  test('an aborted signal stops the reading, and the decompressor with it', async () => {
    // 512 MiB of zeros in a file of the tar, as xz streams one after the other (xz -dc reads them all).
    const chunk = compress(Buffer.alloc(16 << 20), 'xz');
    const big = path('big.tar.xz');
    const head = compress(Buffer.concat([tarOf(rootEntries(), false), fileHeader('zeros', 32 * (16 << 20))]), 'xz');
    writeFileSync(big, Buffer.concat([head, ...Array.from({ length: 32 }, () => chunk), compress(Buffer.alloc(1024), 'xz')]));
    const controller = new AbortController();
    const work = tempDir();
    const reading = readImportSource(big, work, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(processesOf(process.env.TMPDIR!).filter((p) => p.command.startsWith('xz'))).toEqual([]);
  });

  test('an already aborted signal reads nothing', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(readImportSource(path('any'), tempDir(), { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });
});
