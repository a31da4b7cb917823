import { execFileSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { readResultCode } from '../../../src/runner/kiwi.js';
import { refuseNonUtf8Arguments } from '../../../src/util/argv.js';

describe('arguments that are not UTF-8', () => {
  test('an argument whose bytes were not UTF-8 is refused', () => {
    const raw = [Buffer.from('--box'), Buffer.from([0x61, 0xff, 0x62])];
    expect(() => refuseNonUtf8Arguments(['--box', raw[1]!.toString('utf8')], raw)).toThrow('argument "a\uFFFDb" is not valid UTF-8');
  });
  test('U+FFFD written as such passes; without the raw bytes it is refused', () => {
    const arg = 'a\uFFFDb';
    expect(() => refuseNonUtf8Arguments([arg], [Buffer.from(arg)])).not.toThrow();
    expect(() => refuseNonUtf8Arguments([arg], [])).toThrow('not valid UTF-8');
    expect(() => refuseNonUtf8Arguments(['plain', 'ünï'], [])).not.toThrow();
  });
});

describe("KIWI result.code, written by the guest", () => {
  const dir = mkdtempSync(join(tmpdir(), 'bb-unit-'));
  test('a regular file is read (a few bytes at most)', async () => {
    writeFileSync(join(dir, 'code'), `0\n${'x'.repeat(1000)}`);
    expect(await readResultCode(join(dir, 'code'))).toBe(`0\n${'x'.repeat(62)}`);
    expect(await readResultCode(join(dir, 'missing'))).toBeUndefined();
  });
  test('a symlink is not followed: no host file is read', async () => {
    writeFileSync(join(dir, 'secret'), 'host secret');
    symlinkSync(join(dir, 'secret'), join(dir, 'link'));
    await expect(readResultCode(join(dir, 'link'))).rejects.toThrow('is a symlink');
  });
  test('a FIFO or a directory is refused without blocking', async () => {
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await expect(readResultCode(join(dir, 'fifo'))).rejects.toThrow('not a regular file');
    await expect(readResultCode(dir)).rejects.toThrow('not a regular file');
  });
});
