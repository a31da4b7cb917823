import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { ImageRefused, inspectImageFile, selfContainedImage } from '../../../src/qemu/image-file.js';
import { createOverlay } from '../../../src/driver/qemu/system-disk.js';
import { tempDir } from '../../helpers/temp.js';

/*
 * The header reader that decides whether boxbuild opens an image, on images qemu-img made here
 * (qemu-img runs only on these files the test made itself).
 */

let dir: string;
let secret: string;

const qemuImg = (...args: string[]) => execa('qemu-img', args);

/** A qcow2 image made by qemu-img create with these options. */
async function qcow2(name: string, options = '', size = '1M'): Promise<string> {
  const path = join(dir, name);
  await qemuImg('create', '-q', '-f', 'qcow2', ...(options ? ['-o', options] : []), path, size);
  return path;
}

const refusal = (path: string) => inspectImageFile(path).then(() => 'opened', (error: Error) => (error instanceof ImageRefused ? error.message : `${error}`));

beforeAll(() => {
  dir = tempDir();
  secret = join(dir, 'secret');
  writeFileSync(secret, 'SECRET\n', { mode: 0o600 });
});

describe('self-contained images', () => {
  test('a plain qcow2 (version 3 and version 2): qcow2, its virtual size', async () => {
    expect(await inspectImageFile(await qcow2('v3.qcow2', '', '3M'))).toEqual({ format: 'qcow2', size: 3n << 20n });
    expect(await inspectImageFile(await qcow2('v2.qcow2', 'compat=0.10'))).toEqual({ format: 'qcow2', size: 1n << 20n });
  });

  test('anything that is no image format: raw, its file size', async () => {
    const path = join(dir, 'disk.raw');
    writeFileSync(path, randomBytes(1000));
    expect(await inspectImageFile(path)).toEqual({ format: 'raw', size: 1000n });
    writeFileSync(path, '');
    expect(await inspectImageFile(path)).toEqual({ format: 'raw', size: 0n });
  });
});

describe('images that name other files', () => {
  test('a qcow2 with a backing file (made, or rebased onto a file with -u): refused, the file named', async () => {
    const made = await qcow2('made.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', secret, made);
    expect(await refusal(made)).toBe(`names another file as its backing file (${secret}); boxbuild opens only self-contained images`);
    const rebased = await qcow2('rebased.qcow2', 'compat=0.10');
    await qemuImg('rebase', '-u', '-F', 'raw', '-b', secret, rebased);
    expect(await refusal(rebased)).toBe(`names another file as its backing file (${secret}); boxbuild opens only self-contained images`);
  });

  test('a qcow2 whose backing file is a json: file name', async () => {
    const path = await qcow2('json.qcow2');
    const json = `json:{"driver":"raw","file":{"driver":"file","filename":"${secret}"}}`;
    await qemuImg('rebase', '-u', '-F', 'raw', '-b', json, path);
    expect(await refusal(path)).toBe(`names another file as its backing file (${json}); boxbuild opens only self-contained images`);
  });

  test('a qcow2 with an external data file (also raw), or only its feature bit', async () => {
    expect(await refusal(await qcow2('data.qcow2', `data_file=${join(dir, 'data')}`))).toBe(
      `names another file as its external data file (${join(dir, 'data')}); boxbuild opens only self-contained images`,
    );
    expect(await refusal(await qcow2('data-raw.qcow2', `data_file=${join(dir, 'data-raw')},data_file_raw=on`))).toContain(`its external data file (${join(dir, 'data-raw')})`);
    const bit = await qcow2('bit.qcow2');
    const header = readFileSync(bit);
    header[79]! |= 1 << 2; // incompatible features (a big-endian u64 at 72), bit 2
    writeFileSync(bit, header);
    expect(await refusal(bit)).toBe('names another file as its external data file; boxbuild opens only self-contained images');
  });

  test('a file name is shown on one line, control characters escaped', async () => {
    const path = await qcow2('odd.qcow2');
    await qemuImg('rebase', '-u', '-F', 'raw', '-b', '/x\nboxbuild: fine\x1b[0m', path);
    expect(await refusal(path)).toBe('names another file as its backing file (/x\\x0aboxbuild: fine\\x1b[0m); boxbuild opens only self-contained images');
  });
});

describe('other formats are refused', () => {
  test.each([
    ['vmdk', [], 'VMDK'],
    ['vmdk', ['-o', 'subformat=monolithicFlat'], 'VMDK descriptor'],
    ['qed', [], 'QED'],
    ['vdi', [], 'VDI'],
    ['vhdx', [], 'VHDX'],
    ['vpc', [], 'VHD'],
    ['qcow', [], 'qcow (version 1)'],
  ])('%s %s', async (format, options, name) => {
    const path = join(dir, `image.${format}${options.length}`);
    await qemuImg('create', '-q', '-f', format, ...options, path, '1M');
    expect(await refusal(path)).toBe(`is a ${name} image; boxbuild opens raw and qcow2 images`);
  });

  test('a json: file name is not an image; nor is a qcow2 of an unknown version or with unknown features', async () => {
    const json = join(dir, 'json.txt');
    writeFileSync(json, `json:{"driver":"raw","file":{"driver":"file","filename":"${secret}"}}`);
    expect(await refusal(json)).toBe('is not a disk image but a QEMU "json:" file name; boxbuild opens only self-contained images');
    const path = await qcow2('future.qcow2');
    const header = readFileSync(path);
    header[72] = 0x80;
    writeFileSync(path, header);
    expect(await refusal(path)).toBe('uses qcow2 features boxbuild does not know (incompatible feature bits 0x8000000000000000)');
    header.writeUInt32BE(4, 4);
    writeFileSync(path, header);
    expect(await refusal(path)).toBe('is a qcow2 image of version 4, which boxbuild does not know');
    header.writeUInt32BE(3, 4);
    writeFileSync(path, header.subarray(0, 80));
    expect(await refusal(path)).toBe('is a truncated qcow2 image');
  });
});

test('a refusal is one line of the kind asked for, naming the image as the caller does', async () => {
  const path = await qcow2('evil.qcow2');
  await qemuImg('rebase', '-u', '-F', 'raw', '-b', secret, path);
  await expect(selfContainedImage(path, 'out/evil.qcow2', 'usage')).rejects.toMatchObject({
    exitCode: 2,
    message: `out/evil.qcow2 names another file as its backing file (${secret}); boxbuild opens only self-contained images`,
  });
  await expect(selfContainedImage(join(dir, 'missing'), 'box b (x86_64): its system disk', 'boxUnavailable')).rejects.toMatchObject({
    exitCode: 69,
    message: expect.stringMatching(/^box b \(x86_64\): its system disk cannot be read \(ENOENT/),
  });
});

test('an overlay names its backing file and format without qemu-img opening it', async () => {
  const base = join(dir, 'base.raw');
  writeFileSync(base, randomBytes(1000));
  const overlay = join(dir, 'overlay.qcow2');
  // The size is boxbuild's reading: were the backing file opened, its 1000 bytes would say so too; this one says otherwise.
  await createOverlay(overlay, { path: base, format: 'raw', size: 4096n });
  const info = JSON.parse((await qemuImg('info', '--output=json', overlay)).stdout) as Record<string, unknown>;
  expect(info).toMatchObject({ 'virtual-size': 4096, 'backing-filename': base, 'backing-filename-format': 'raw' });
  // A backing file that is not there at all: qemu-img never looked.
  await createOverlay(join(dir, 'blind.qcow2'), { path: join(dir, 'nothing-here'), format: 'qcow2', size: 1024n });
});
