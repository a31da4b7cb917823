import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { type ImportSource, type Layer, readImportSource } from '../../../../src/box/import/source.js';
import { tempDir } from '../../../helpers/temp.js';
import { Parser, type ReadEntry } from 'tar';
import {
  type ImageLayer,
  MEDIA,
  OciLayout,
  compress,
  descriptor,
  digestOf,
  elfHeader,
  hostElf,
  rootEntries,
  sha256,
  tarDirectory,
  tarOf,
  whiteoutLayers,
} from './fixtures.js';

/*
 * Each format an image is imported from, read as it comes: what readImportSource prepares (plain
 * layers, their whiteouts, the architecture, the tree's size), and a sha256 that stays across two
 * reads and changes with one byte.
 */

let dir: string;
let count = 0;
const path = (name: string) => join(dir, `${++count}-${name}`);
const read = (source: string, options: Parameters<typeof readImportSource>[2] = {}) => readImportSource(source, tempDir('bb-import-work-'), options);
const rootfsOf = (source: ImportSource) => {
  if (source.kind !== 'rootfs') throw new Error(`a ${source.kind}, not a root file system`);
  return source;
};

/** The entry paths of a plain tar, as written. */
function entriesOf(file: string): string[] {
  const paths: string[] = [];
  const parser = new Parser({ onReadEntry: (entry: ReadEntry) => (paths.push(entry.path), entry.resume()) });
  parser.end(readFileSync(file));
  return paths;
}

/** What the whiteout layers of whiteoutLayers() come out as: the first layer unchanged, the second deleting. */
function expectWhiteoutLayers(layers: Layer[]): void {
  expect(layers).toHaveLength(2);
  expect(layers[0]).toMatchObject({ whiteouts: [], opaque: [], markers: [] });
  expect(layers[1]).toMatchObject({ whiteouts: ['etc/passwd'], opaque: ['var/cache'], markers: ['etc/.wh.passwd', 'var/cache/.wh..wh..opq'] });
  for (const [at, layer] of whiteoutLayers().entries()) expect(sha256(readFileSync(layers[at]!.file))).toBe(sha256(layer.tar));
}

/** The merged tree of whiteoutLayers(): the root's 12 entries, less etc/passwd and var/cache/a, plus etc/hostname and var/cache/b. */
const WHITEOUT_TREE = { files: 12, bytes: hostElf().length + 'old\n'.length + 'new\n'.length + 'box\n'.length };

beforeAll(() => {
  dir = tempDir();
});

describe('root file system tarballs', () => {
  test.each(['none', 'gzip', 'xz', 'zstd'] as const)('a %s tar is one plain layer, its arch that of /bin/sh through bin -> usr/bin -> dash', async (how) => {
    const tar = tarOf(rootEntries());
    const file = path('root.tar');
    writeFileSync(file, compress(tar, how));
    const source = rootfsOf(await read(file));
    expect(source).toMatchObject({ what: 'tarball', arch: 'x86_64', files: 12, bytes: hostElf().length + 41, sha256: sha256(readFileSync(file)), size: readFileSync(file).length });
    expect(source.layers).toEqual([{ file: expect.stringMatching(/\/rootfs\.tar$/), whiteouts: [], opaque: [], markers: [] }]);
    expect(readFileSync(source.layers[0]!.file).equals(tar)).toBe(true);
  });

  test('its sha256 is the same on a second read and another when one byte changes', async () => {
    const tar = tarOf(rootEntries());
    const file = path('root.tar');
    writeFileSync(file, tar);
    const first = await read(file);
    expect((await read(file)).sha256).toBe(first.sha256);
    const at = tar.indexOf('root:x:0:0');
    tar[at] = 'R'.charCodeAt(0);
    writeFileSync(file, tar);
    expect((await read(file)).sha256).not.toBe(first.sha256);
  });

  test('an aarch64 root file system is told by its ELF header; --arch that agrees changes nothing', async () => {
    const file = path('arm.tar.gz');
    writeFileSync(file, compress(tarOf(rootEntries(elfHeader(0xb7))), 'gzip'));
    expect((await read(file)).kind === 'rootfs' && (await read(file, { arch: 'aarch64' }))).toMatchObject({ arch: 'aarch64' });
  });

  test('without an ELF /bin/sh, --arch names the architecture', async () => {
    const file = path('scripts.tar');
    writeFileSync(file, tarOf([{ path: 'bin/sh', data: '#!/bin/true\n' }, { path: 'etc/hostname', data: 'x\n' }]));
    expect(await read(file, { arch: 'aarch64' })).toMatchObject({ kind: 'rootfs', arch: 'aarch64', files: 4 });
  });

  test('device nodes, fifos and set-id files are imported as they are', async () => {
    const file = path('devices.tar');
    const entries = [...rootEntries(), { path: 'dev/null', type: 'CharacterDevice' as const }, { path: 'run/initctl', type: 'FIFO' as const }, { path: 'usr/bin/su', data: 'su', mode: 0o4755 }];
    writeFileSync(file, tarOf(entries));
    expect(await read(file)).toMatchObject({ kind: 'rootfs', files: 17 });
  });
});

describe('root file system directories', () => {
  let root: string;

  beforeAll(() => {
    root = path('root');
    mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'usr', 'bin', 'dash'), hostElf(), { mode: 0o755 });
    symlinkSync('dash', join(root, 'usr', 'bin', 'sh'));
    symlinkSync('usr/bin', join(root, 'bin'));
    symlinkSync('/etc/shadow', join(root, 'etc', 'shadow')); // never followed
    writeFileSync(join(root, 'etc', 'hostname'), 'box\n');
  });

  test('a directory is one tar made by GNU tar, symlinks kept as symlinks', async () => {
    const source = rootfsOf(await read(root));
    expect(source).toMatchObject({ what: 'directory', arch: 'x86_64', files: 8, bytes: hostElf().length + 4 });
    expect(source.layers).toHaveLength(1);
    expect(entriesOf(source.layers[0]!.file).sort()).toEqual(['./', './bin', './etc/', './etc/hostname', './etc/shadow', './usr/', './usr/bin/', './usr/bin/dash', './usr/bin/sh']);
    expect(source.sha256).toBe(sha256(readFileSync(source.layers[0]!.file)));
  });

  test('its sha256 is the same on a second read and another when one byte changes', async () => {
    const first = await read(root);
    expect((await read(root)).sha256).toBe(first.sha256);
    const touched = path('root');
    execFileSync('cp', ['-a', root, touched]);
    expect((await read(touched)).sha256).toBe(first.sha256);
    writeFileSync(join(touched, 'etc', 'hostname'), 'bog\n');
    execFileSync('touch', ['-r', join(root, 'etc', 'hostname'), join(touched, 'etc', 'hostname')]);
    expect((await read(touched)).sha256).not.toBe(first.sha256);
  });
});

describe('OCI layouts', () => {
  test('two layers (gzip, zstd), whiteouts and an opaque directory in the second; arch from the config; sha256 of the manifest', async () => {
    const layout = new OciLayout(path('layout'));
    const manifest = layout.image(whiteoutLayers());
    layout.index([{ ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }]);
    const source = rootfsOf(await read(layout.dir));
    expect(source).toMatchObject({ what: 'OCI layout', arch: 'x86_64', ...WHITEOUT_TREE, sha256: manifest.digest.slice(7), size: manifest.size });
    expectWhiteoutLayers(source.layers);
    expect(await read(layout.dir)).toEqual({ ...source, layers: expect.any(Array) });
  });

  test('a nested index: the platform of --arch; none given, a one-line usage error listing them', async () => {
    const layout = new OciLayout(path('layout'));
    const amd64 = layout.image([{ tar: tarOf(rootEntries()), compression: 'gzip' }], 'amd64');
    const arm64 = layout.image([{ tar: tarOf(rootEntries(elfHeader(0xb7))), compression: 'xz' }], 'arm64');
    const attestation = { ...layout.image([{ tar: tarOf([{ path: 'x' }]), compression: 'none' }], 'unknown'), platform: { architecture: 'unknown', os: 'unknown' } };
    const inner = layout.json({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [amd64, arm64, attestation] });
    layout.index([descriptor(MEDIA.index, inner)]);
    expect(await read(layout.dir, { arch: 'aarch64' })).toMatchObject({ arch: 'aarch64', sha256: arm64.digest.slice(7) });
    expect(await read(layout.dir, { arch: 'x86_64' })).toMatchObject({ arch: 'x86_64', sha256: amd64.digest.slice(7) });
    await expect(read(layout.dir)).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/holds several images \(linux\/amd64, linux\/arm64\): choose one with --arch$/) });
    await expect(read(layout.dir, { arch: 's390x' })).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/no image for s390x \(linux\/s390x\), only linux\/amd64, linux\/arm64$/) });
  });

  test('an empty layer is left out', async () => {
    const layout = new OciLayout(path('layout'));
    layout.index([layout.image([{ tar: tarOf(rootEntries()), compression: 'gzip' }, { tar: Buffer.alloc(1024), compression: 'gzip' }])]);
    expect(rootfsOf(await read(layout.dir)).layers).toHaveLength(1);
  });
});

describe('OCI and Docker archives', () => {
  let layout: OciLayout;
  let manifest: ReturnType<OciLayout['image']>;

  beforeAll(() => {
    layout = new OciLayout(path('layout'));
    manifest = layout.image(whiteoutLayers());
    layout.index([manifest]);
  });

  test('an OCI archive: the layout in a tar, its blobs read out of it', async () => {
    const file = tarDirectory(layout.dir, path('image.oci.tar'));
    const source = rootfsOf(await read(file));
    expect(source).toMatchObject({ what: 'OCI archive', arch: 'x86_64', ...WHITEOUT_TREE, sha256: sha256(readFileSync(file)) });
    expectWhiteoutLayers(source.layers);
  });

  test('a compressed OCI archive, its blobs in any order', async () => {
    const reversed = path('image.oci.tar');
    execFileSync('tar', ['-C', layout.dir, '-cf', reversed, 'index.json', 'oci-layout', 'blobs']);
    const file = path('image.oci.tar.zst');
    writeFileSync(file, compress(readFileSync(reversed), 'zstd'));
    const source = rootfsOf(await read(file));
    expect(source).toMatchObject({ what: 'OCI archive', ...WHITEOUT_TREE });
    expectWhiteoutLayers(source.layers);
  });

  test('a Docker archive (docker save): layers and config by path, checked against the diff_ids', async () => {
    const archive = path('docker');
    const layers = whiteoutLayers();
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(({ tar }) => digestOf(tar)) } }));
    const configName = `${sha256(config)}.json`;
    mkdirSync(archive);
    writeFileSync(join(archive, configName), config);
    const paths = layers.map(({ tar }, at) => {
      mkdirSync(join(archive, `id${at}`));
      writeFileSync(join(archive, `id${at}`, 'layer.tar'), tar);
      return `id${at}/layer.tar`;
    });
    writeFileSync(join(archive, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: ['test:latest'], Layers: paths }]));
    const file = tarDirectory(archive, path('docker.tar'));
    const source = rootfsOf(await read(file));
    expect(source).toMatchObject({ what: 'Docker archive', arch: 'x86_64', ...WHITEOUT_TREE, sha256: sha256(readFileSync(file)) });
    expectWhiteoutLayers(source.layers);
  });
});

describe('disk images', () => {
  test('a qcow2 image is used where it is', async () => {
    const file = path('disk.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
    expect(await read(file)).toEqual({ kind: 'disk', format: 'qcow2', path: file, what: 'disk image', sha256: sha256(readFileSync(file)), size: readFileSync(file).length });
  });

  test('a raw disk with an MBR, and one with a GPT', async () => {
    const mbr = path('mbr.img');
    const bytes = Buffer.alloc(1 << 20);
    bytes.writeUInt16BE(0x55aa, 510);
    writeFileSync(mbr, bytes);
    expect(await read(mbr)).toEqual({ kind: 'disk', format: 'raw', path: mbr, what: 'disk image', sha256: sha256(bytes), size: bytes.length });
    const gpt = path('gpt.img');
    const other = Buffer.alloc(1 << 20);
    other.write('EFI PART', 512, 'latin1');
    writeFileSync(gpt, other);
    expect(await read(gpt)).toMatchObject({ kind: 'disk', format: 'raw', path: gpt });
  });

  test.each([
    ['ext4', ['mkfs.ext4', '-q', '-F']],
    ['xfs', ['mkfs.xfs', '-q']],
    ['btrfs', ['mkfs.btrfs', '-q']],
  ])('a raw disk that is one %s file system, no partition table', async (fs, mkfs) => {
    const file = path(`${fs}.img`);
    execFileSync('truncate', ['-s', '320M', file]);
    execFileSync(mkfs[0]!, [...mkfs.slice(1), file]);
    expect(await read(file)).toMatchObject({ kind: 'disk', format: 'raw', path: file });
  });

  test('a Vagrant box of the libvirt provider: its box.img, a self-contained qcow2, in the work directory', async () => {
    const box = path('box');
    mkdirSync(box);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(box, 'box.img'), '16M']);
    writeFileSync(join(box, 'metadata.json'), JSON.stringify({ provider: 'libvirt', format: 'qcow2', virtual_size: 1 }));
    writeFileSync(join(box, 'Vagrantfile'), 'Vagrant.configure("2") do |config| end\n');
    const file = path('test.box');
    execFileSync('tar', ['-C', box, '-czf', file, 'metadata.json', 'Vagrantfile', 'box.img']);
    const work = tempDir();
    const source = await readImportSource(file, work, {});
    expect(source).toEqual({ kind: 'disk', format: 'qcow2', path: join(work, 'box.img'), what: 'Vagrant box', sha256: sha256(readFileSync(file)), size: readFileSync(file).length });
    expect(readFileSync(join(work, 'box.img')).equals(readFileSync(join(box, 'box.img')))).toBe(true);
    expect(existsSync(join(work, 'source.tar'))).toBe(false);
  });
});

describe('image references', () => {
  test.skipIf(!existsSync('/usr/bin/skopeo'))('oci-archive:FILE is copied by skopeo, then read as an OCI layout', async () => {
    const layout = new OciLayout(path('layout'));
    const manifest = layout.image(whiteoutLayers() satisfies ImageLayer[]);
    layout.index([manifest]);
    const file = tarDirectory(layout.dir, path('image.oci.tar'));
    const source = rootfsOf(await read(`oci-archive:${file}`));
    expect(source).toMatchObject({ what: 'image reference', arch: 'x86_64', ...WHITEOUT_TREE, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expectWhiteoutLayers(source.layers);
  });
});
