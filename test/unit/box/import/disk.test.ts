import { gzipSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { kernelArch } from '../../../../src/box/import/disk.js';

describe('the architecture of an image\'s kernel', () => {
  const at = (offset: number, magic: string) => {
    const head = Buffer.alloc(4096);
    head.write(magic, offset, 'latin1');
    return head;
  };
  test('an x86 bzImage, an arm64 Image (also gzip-compressed, as Debian ships it), anything else', () => {
    expect(kernelArch(at(0x202, 'HdrS'))).toBe('x86_64');
    expect(kernelArch(at(0x38, 'ARM\x64'))).toBe('aarch64');
    expect(kernelArch(gzipSync(at(0x38, 'ARM\x64')))).toBe('aarch64');
    // only the head of the file is read: a cut gzip stream still tells
    expect(kernelArch(gzipSync(Buffer.concat([at(0x38, 'ARM\x64'), Buffer.alloc(1 << 20, 7)])).subarray(0, 200))).toBe('aarch64');
    expect(kernelArch(at(0x202, 'HdrX'))).toBeUndefined();
    expect(kernelArch(Buffer.from([0x1f, 0x8b, 1, 2, 3]))).toBeUndefined();
  });
});
