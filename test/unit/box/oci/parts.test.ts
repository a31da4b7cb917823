import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { type DiskPart, diskParts } from '../../../../src/box/oci/parts.js';
import { tempDir } from '../../../helpers/temp.js';

/*
 * A disk cut into parts: the parts are the disk, byte for byte, and no two blobs of a box are the
 * same (a puller refuses a manifest that names one twice), whatever the disk holds.
 */

const SIZE = 4096;

let dir: string;
let count = 0;

beforeAll(() => {
  dir = tempDir();
});

const digest = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A block of SIZE bytes named by a letter: Z is zeros, other letters their byte, repeated. */
const block = (letter: string) => Buffer.alloc(SIZE, letter === 'Z' ? 0 : letter);

/** A file of blocks named by letters ("ABAB"), then `tail` bytes of "t"; resolves with its path and bytes. */
function disk(letters: string, tail = 0): { path: string; bytes: Buffer } {
  const bytes = Buffer.concat([...[...letters].map(block), Buffer.alloc(tail, 't')]);
  const path = join(dir, `disk-${++count}`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** The parts as the letters of their blocks ("A", "BA"), with the size of a shorter last block. */
function shape(parts: DiskPart[], bytes: Buffer): string[] {
  return parts.map(({ offset, size }) => {
    const blocks = Array.from({ length: Math.ceil(size / SIZE) }, (_, n) => bytes.subarray(offset + n * SIZE, Math.min(offset + (n + 1) * SIZE, offset + size)));
    return blocks.map((b) => (b.length < SIZE ? `+${b.length}` : b[0] === 0 ? 'Z' : String.fromCharCode(b[0]!))).join('');
  });
}

/** What every cut must be: the whole file, in order, each part its bytes' digest, no digest twice or taken. */
function expectSound(parts: DiskPart[], sha256: string, bytes: Buffer, taken: string[] = []): void {
  let offset = 0;
  for (const part of parts) {
    expect(part.offset).toBe(offset);
    expect(part.size).toBeGreaterThan(0);
    expect(part.offset % SIZE).toBe(0);
    expect(part.digest).toBe(digest(bytes.subarray(part.offset, part.offset + part.size)));
    offset += part.size;
  }
  expect(offset).toBe(bytes.length);
  expect(`sha256:${sha256}`).toBe(digest(bytes));
  const digests = parts.map((part) => part.digest);
  expect(new Set(digests).size).toBe(digests.length);
  if (!taken.includes(digest(bytes))) expect(digests.filter((d) => taken.includes(d))).toEqual([]);
}

/** Cuts `letters` (and a tail), checks the cut, and resolves with its shape. */
async function cut(letters: string, { tail = 0, taken = [] as string[] } = {}): Promise<string[]> {
  const { path, bytes } = disk(letters, tail);
  const { parts, sha256 } = await diskParts(path, SIZE, taken);
  expectSound(parts, sha256, bytes, taken);
  return shape(parts, bytes);
}

describe('diskParts', () => {
  test('distinct blocks are a part each; a file exactly N parts long is N parts', async () => {
    expect(await cut('ABCD')).toEqual(['A', 'B', 'C', 'D']);
    expect(await cut('A')).toEqual(['A']);
  });

  test('a file smaller than one part is one part; a shorter last block is a part of its own', async () => {
    expect(await cut('', { tail: 100 })).toEqual(['+100']);
    expect(await cut('AB', { tail: 1 })).toEqual(['A', 'B', '+1']);
  });

  test('an empty file has no parts', async () => {
    const { path } = disk('');
    expect(await diskParts(path, SIZE)).toEqual({ parts: [], sha256: createHash('sha256').digest('hex') });
  });

  test('a file of zeros is not a part named many times', async () => {
    expect(await cut('ZZ')).toEqual(['ZZ']);
    expect(await cut('ZZZ')).toEqual(['Z', 'ZZ']);
    expect(await cut('ZZZZZZZZ')).toEqual(['Z', 'ZZZZZZZ']);
    expect(await cut('ZZZZ', { tail: 10 })).toEqual(['Z', 'ZZZ', '+10']);
  });

  test('repeated patterns: a block seen before joins the part it follows', async () => {
    expect(await cut('ABAB')).toEqual(['A', 'BA', 'B']);
    expect(await cut('ABABAB')).toEqual(['A', 'BA', 'BAB']);
    expect(await cut('AAAB')).toEqual(['A', 'AA', 'B']);
    expect(await cut('ABA')).toEqual(['A', 'BA']);
    expect(await cut('AABB')).toEqual(['A', 'AB', 'B']);
    expect(await cut('ZAZBZ')).toEqual(['Z', 'AZ', 'BZ']);
  });

  test('the digests of the box\'s other blobs (a kernel the size of a part) are not a part', async () => {
    const kernel = digest(block('K'));
    expect(await cut('KX', { taken: [kernel] })).toEqual(['KX']);
    expect(await cut('XKY', { taken: [kernel] })).toEqual(['XK', 'Y']);
    expect(await cut('XYK', { taken: [kernel] })).toEqual(['X', 'YK']);
    expect(await cut('KK', { taken: [kernel] })).toEqual(['KK']);
    expect(await cut('XY', { taken: [digest(block('Y'))] })).toEqual(['XY']);
  });

  test('a disk that is another blob as a whole is one part (the caller refuses it)', async () => {
    const { path, bytes } = disk('K');
    const { parts } = await diskParts(path, SIZE, [digest(bytes)]);
    expect(parts).toEqual([{ offset: 0, size: SIZE, digest: digest(bytes) }]);
  });

  test('any disk of few kinds of blocks, with any blobs taken, is cut soundly', async () => {
    // a small linear congruential generator: the same disks on every run
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      const letters = Array.from({ length: random(12) }, () => 'ABZ'[random(3)]).join('');
      const { path, bytes } = disk(letters, random(3) === 0 ? 1 + random(SIZE) : 0);
      const blocks = Math.ceil(bytes.length / SIZE);
      const taken = Array.from({ length: random(3) }, () => {
        const start = random(blocks + 1) * SIZE;
        return digest(bytes.subarray(start, start + (1 + random(3)) * SIZE));
      });
      const { parts, sha256 } = await diskParts(path, SIZE, taken);
      expectSound(parts, sha256, bytes, taken);
    }
  });
});
