import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import type { ManifestEntry } from '../../../../src/driver/remote/protocol.js';
import { BlobStore, blobSources, checkManifest, listDescription } from '../../../../src/driver/remote/sync.js';
import { tempDir } from '../../../helpers/temp.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

function description(): string {
  const dir = tempDir();
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'build'), 'echo hi\n', { mode: 0o755 });
  writeFileSync(join(dir, 'sub/a.txt'), 'same');
  writeFileSync(join(dir, 'sub/b.txt'), 'same');
  symlinkSync('/etc/passwd', join(dir, 'link'));
  return dir;
}

describe('description sync', () => {
  test('the manifest lists directories before their files, contents by sha256, symlinks as symlinks', async () => {
    const manifest = await listDescription(description());
    expect(manifest).toEqual([
      { path: 'build', type: 'file', mode: 0o755, size: 8, sha256: sha('echo hi\n') },
      { path: 'link', type: 'symlink', mode: expect.any(Number), target: '/etc/passwd' },
      { path: 'sub', type: 'dir', mode: expect.any(Number) },
      { path: 'sub/a.txt', type: 'file', mode: expect.any(Number), size: 4, sha256: sha('same') },
      { path: 'sub/b.txt', type: 'file', mode: expect.any(Number), size: 4, sha256: sha('same') },
    ]);
    expect(checkManifest(manifest)).toBe(manifest);
    expect(blobSources('/d', manifest).size).toBe(2);
  });

  const file = (path: string): ManifestEntry => ({ path, type: 'file', mode: 0o644, size: 1, sha256: sha('x') });
  test.each([
    ['a path with ..', [file('../x')]],
    ['an absolute path', [file('/x')]],
    ['a file below a symlink', [{ path: 'l', type: 'symlink', mode: 0o777, target: '/etc' }, file('l/passwd')]],
    ['a file before its directory', [file('d/x'), { path: 'd', type: 'dir', mode: 0o755 }]],
    ['a path twice', [file('x'), file('x')]],
    ['a device', [{ path: 'x', type: 'char', mode: 0o644 }]],
    ['a bad hash', [{ ...file('x'), sha256: '../../x' }]],
    ['set-id bits', [{ ...file('x'), mode: 0o4755 }]],
  ])('a manifest with %s is refused', (_, manifest) => {
    expect(() => checkManifest(manifest)).toThrow();
  });

  test('the store says what it lacks, keeps only contents of the right hash, and makes a description of its own for each run', async () => {
    const store = await new BlobStore(join(tempDir(), 'blobs')).open();
    const manifest = await listDescription(description());
    expect((await store.missing(manifest)).sort()).toEqual([sha('echo hi\n'), sha('same')].sort());
    await expect(store.receive(sha('same'), Readable.from([Buffer.from('other')]))).rejects.toThrow(/another sha256/);
    await store.receive(sha('same'), Readable.from([Buffer.from('sa'), Buffer.from('me')]));
    await store.receive(sha('echo hi\n'), Readable.from([Buffer.from('echo hi\n')]));
    expect(await store.missing(manifest)).toEqual([]);
    expect(readdirSync(store.dir).sort()).toEqual([sha('echo hi\n'), sha('same')].sort()); // no temporary file left
    for (const run of [tempDir(), tempDir()]) {
      await store.materialise(manifest, run);
      expect(readFileSync(join(run, 'sub/b.txt'), 'utf8')).toBe('same');
      expect(lstatSync(join(run, 'build')).mode & 0o777).toBe(0o755);
      expect(readlinkSync(join(run, 'link'))).toBe('/etc/passwd');
    }
  });
});
