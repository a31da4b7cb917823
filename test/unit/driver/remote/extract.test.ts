import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { TargetWriter } from '../../../../src/driver/remote/extract.js';
import type { TargetEntry } from '../../../../src/driver/remote/protocol.js';
import { tempDir } from '../../../helpers/temp.js';

async function* bytes(text = ''): AsyncGenerator<Buffer> {
  if (text) yield Buffer.from(text);
}

/** A target directory inside a directory of its own, beside a file a hostile host must not reach. */
function target() {
  const outer = tempDir();
  const root = join(outer, 'target');
  mkdirSync(root);
  writeFileSync(join(outer, 'victim'), 'safe');
  mkdirSync(join(outer, 'elsewhere'));
  return { outer, root, writer: new TargetWriter(root) };
}

const file = (path: string, mode = 0o644): TargetEntry => ({ path, type: 'file', mode });

describe('the target directory the build host sends back', () => {
  test('directories, files and symlinks are written; set-id bits dropped; directory modes set at the end', async () => {
    const { root, writer } = target();
    await writer.write({ path: 'ro', type: 'dir', mode: 0o555 }, bytes());
    await writer.write(file('ro/tool', 0o4755), bytes('#!/bin/sh\n'));
    await writer.write({ path: 'ro/link', type: 'symlink', mode: 0o777, target: '../../victim' }, bytes());
    await writer.finish();
    expect(readFileSync(join(root, 'ro/tool'), 'utf8')).toBe('#!/bin/sh\n');
    expect(lstatSync(join(root, 'ro/tool')).mode & 0o7777).toBe(0o755);
    expect(lstatSync(join(root, 'ro')).mode & 0o777).toBe(0o555);
    expect(readlinkSync(join(root, 'ro/link'))).toBe('../../victim');
    expect([writer.files, writer.bytes]).toEqual([1, 10]);
  });

  test.each([
    ['a path with ..', [file('../victim')]],
    ['an absolute path', [file('/tmp/x')]],
    ['a hard link', [{ path: 'x', type: 'link', mode: 0o644, target: '../victim' }]],
    ['a device', [{ path: 'x', type: 'char', mode: 0o644 }]],
    ['a fifo', [{ path: 'x', type: 'fifo', mode: 0o644 }]],
    ['a file through a symlink it sent', [{ path: 'l', type: 'symlink', mode: 0o777, target: '..' }, file('l/victim')]],
    ['a directory through a symlink it sent', [{ path: 'l', type: 'symlink', mode: 0o777, target: '../elsewhere' }, { path: 'l/d', type: 'dir', mode: 0o755 }]],
    ['a symlink in the place of a symlink to a directory', [{ path: 'l', type: 'symlink', mode: 0o777, target: '../elsewhere' }, { path: 'l', type: 'dir', mode: 0o755 }]],
  ] as Array<[string, TargetEntry[]]>)('%s is refused, and nothing is written outside', async (_, entries) => {
    const { outer, writer } = target();
    await expect(
      (async () => {
        for (const entry of entries) await writer.write(entry, bytes('evil'));
      })(),
    ).rejects.toThrow();
    expect(readFileSync(join(outer, 'victim'), 'utf8')).toBe('safe');
    expect(readdirSync(join(outer, 'elsewhere'))).toEqual([]);
  });

  test('a symlink already in the target is not written through: a file in its place replaces the link, a path below it is refused', async () => {
    const { outer, root, writer } = target();
    symlinkSync('../victim', join(root, 'out.txt'));
    symlinkSync('../elsewhere', join(root, 'dir'));
    await writer.write(file('out.txt'), bytes('new'));
    expect(lstatSync(join(root, 'out.txt')).isFile()).toBe(true);
    await expect(writer.write(file('dir/x'), bytes('evil'))).rejects.toThrow(/a symlink is on its way/);
    expect(readFileSync(join(outer, 'victim'), 'utf8')).toBe('safe');
    expect(readdirSync(join(outer, 'elsewhere'))).toEqual([]);
  });

  test('files already in the target are replaced, a directory in the place of a file is refused', async () => {
    const { root, writer } = target();
    writeFileSync(join(root, 'old'), 'old');
    mkdirSync(join(root, 'd'));
    await writer.write(file('old'), bytes('new'));
    expect(readFileSync(join(root, 'old'), 'utf8')).toBe('new');
    await expect(writer.write(file('d'), bytes('x'))).rejects.toThrow(/a directory is in its place/);
  });
});
