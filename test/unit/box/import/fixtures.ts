import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

/*
 * Inputs of the import tests, made by the tests themselves: tars entry by entry (with the `tar`
 * package's Header, so that hostile entries can be written), compressed layers, OCI layouts to the
 * image-spec, OCI and Docker archives of them.
 */

export interface Entry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO' | 'GNUDumpDir';
  data?: Buffer | string;
  linkpath?: string;
  mode?: number;
}

/** A tar of `entries`, in order, with its two end blocks (unless `end` is false). */
export function tarOf(entries: Entry[], end = true): Buffer {
  const blocks: Buffer[] = [];
  for (const { path, type = 'File', data = '', linkpath, mode } of entries) {
    const bytes = Buffer.from(data);
    const block = Buffer.alloc(512);
    const header = new Header({
      path,
      type,
      size: type === 'File' ? bytes.length : 0,
      mode: mode ?? (type === 'Directory' ? 0o755 : 0o644),
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      linkpath,
      devmaj: type === 'CharacterDevice' ? 1 : 0,
      devmin: type === 'CharacterDevice' ? 3 : 0,
    });
    header.encode(block, 0);
    blocks.push(block);
    if (type === 'File') blocks.push(bytes, Buffer.alloc((512 - (bytes.length % 512)) % 512));
  }
  if (end) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** The header block of a regular file of `size` bytes (its data to follow, in blocks of 512). */
export function fileHeader(path: string, size: number): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path, type: 'File', size, mode: 0o644, mtime: new Date(0) }).encode(block, 0);
  return block;
}

/** A header block written byte by byte, for headers the `tar` package would not write (checksum filled in). */
export function rawHeader(fields: { name: string | Buffer; flag?: string; size?: number; link?: string; magic?: string; prefix?: string }): Buffer {
  const { name, flag = '0', size = 0, link = '', magic = 'ustar\x0000', prefix = '' } = fields;
  const block = Buffer.alloc(512);
  Buffer.from(name).copy(block, 0);
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('00000000000\0', 136, 'latin1');
  block.write(flag, 156, 'latin1');
  block.write(link, 157, 'utf8');
  block.write(magic, 257, 'latin1');
  block.write(prefix, 345, 'latin1');
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

/** Data padded to whole blocks. */
export const padded = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);

/** The content of a pax header of `records`. */
export function paxOf(records: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(records).map(([key, value]) => {
      const record = ` ${key}=${value}\n`;
      let length = Buffer.byteLength(record) + 1;
      while (`${length}`.length + Buffer.byteLength(record) !== length) length++;
      return Buffer.from(`${length}${record}`);
    }),
  );
}

/** A real ELF program of this host (x86_64 here: /bin/dash). */
export const hostElf = () => readFileSync('/bin/dash');

/** The first 64 bytes of a little-endian 64-bit ELF for `machine` (0xb7: aarch64). */
export function elfHeader(machine: number): Buffer {
  const head = Buffer.alloc(64);
  head.write('\x7fELF', 0, 'latin1');
  head[4] = 2;
  head[5] = 1;
  head[6] = 1;
  head.writeUInt16LE(2, 16);
  head.writeUInt16LE(machine, 18);
  return head;
}

/** A small root file system: usr-merged (bin -> usr/bin), /bin/sh a symlink to dash, an ELF program. */
export function rootEntries(sh: Buffer = hostElf()): Entry[] {
  return [
    { path: './', type: 'Directory' },
    { path: './usr/', type: 'Directory' },
    { path: './usr/bin/', type: 'Directory' },
    { path: './usr/bin/dash', data: sh, mode: 0o755 },
    { path: './usr/bin/sh', type: 'SymbolicLink', linkpath: 'dash' },
    { path: './bin', type: 'SymbolicLink', linkpath: 'usr/bin' },
    { path: './etc/', type: 'Directory' },
    { path: './etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\n' },
    { path: './etc/old/', type: 'Directory' },
    { path: './etc/old/file', data: 'old\n' },
    { path: './var/', type: 'Directory' },
    { path: './var/cache/', type: 'Directory' },
    { path: './var/cache/a', data: 'cached\n' },
  ];
}

export const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
export const digestOf = (bytes: Buffer) => `sha256:${sha256(bytes)}`;

export function compress(bytes: Buffer, how: 'gzip' | 'xz' | 'zstd' | 'none'): Buffer {
  if (how === 'none') return bytes;
  if (how === 'gzip') return gzipSync(bytes);
  return execFileSync(how, ['-c', '-q'], { input: bytes, maxBuffer: 1 << 30 });
}

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** A layer of an image to write: its plain tar and how its blob is compressed. */
export interface ImageLayer {
  tar: Buffer;
  compression: 'gzip' | 'xz' | 'zstd' | 'none';
}

/** A descriptor of bytes. */
export const descriptor = (mediaType: string, bytes: Buffer, extra: Record<string, unknown> = {}) => ({ mediaType, digest: digestOf(bytes), size: bytes.length, ...extra });

/** An OCI layout writer: blobs by digest, then index.json and oci-layout. */
export class OciLayout {
  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  }

  blob(bytes: Buffer): string {
    writeFileSync(join(this.dir, 'blobs', 'sha256', sha256(bytes)), bytes);
    return digestOf(bytes);
  }

  json(value: unknown): Buffer {
    const bytes = Buffer.from(JSON.stringify(value));
    this.blob(bytes);
    return bytes;
  }

  /** An image: its layers' blobs, config and manifest; returns the manifest's descriptor (with `platform`). */
  image(layers: ImageLayer[], architecture = 'amd64', configExtra: Record<string, unknown> = {}) {
    const blobs = layers.map(({ tar, compression }) => {
      const bytes = compress(tar, compression);
      this.blob(bytes);
      return descriptor(compression === 'zstd' ? MEDIA.layerZstd : MEDIA.layer, bytes);
    });
    const config = this.json({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(({ tar }) => digestOf(tar)) }, config: {}, ...configExtra });
    const manifest = this.json({ schemaVersion: 2, mediaType: MEDIA.manifest, config: descriptor(MEDIA.config, config), layers: blobs });
    return descriptor(MEDIA.manifest, manifest, { platform: { architecture, os: 'linux' } });
  }

  index(manifests: unknown[]): void {
    writeFileSync(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests }));
  }
}

/** A tar of a directory's contents, made by GNU tar. */
export function tarDirectory(dir: string, file: string): string {
  execFileSync('tar', ['-C', dir, '-cf', file, '.']);
  return file;
}

/** The two layers of the whiteout tests: a root file system, then a layer that deletes and adds. */
export function whiteoutLayers(): ImageLayer[] {
  return [
    { tar: tarOf(rootEntries()), compression: 'gzip' },
    {
      tar: tarOf([
        { path: 'etc/.wh.passwd', data: '' },
        { path: 'var/cache/.wh..wh..opq', data: '' },
        { path: 'var/cache/b', data: 'new\n' },
        { path: 'etc/hostname', data: 'box\n' },
      ]),
      compression: 'zstd',
    },
  ];
}
