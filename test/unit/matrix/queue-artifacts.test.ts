import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MANIFEST, attemptDir, buildDir, listFiles, publish, removeStaleAttempts, writeManifest } from '../../../src/matrix/queue/artifacts.js';
import { tempDir } from '../../helpers/temp.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** An attempt's directory as a worker leaves it: a log and a target with one file in a subdirectory. */
function attempt(root: string, n: number, worker: string, content = `built by ${worker}`): string {
  const dir = attemptDir(root, 'run1', 'b1', n, worker);
  mkdirSync(join(dir, 'target/sub'), { recursive: true });
  writeFileSync(join(dir, 'log.txt'), 'log\n');
  writeFileSync(join(dir, 'target/sub/out.txt'), content);
  return dir;
}

describe('artifact manifest', () => {
  test('every regular file with its size and sha256, sorted; links are not followed; the manifest leaves itself out', async () => {
    const root = tempDir();
    const dir = attempt(root, 1, 'w1');
    writeFileSync(join(root, 'secret'), 'outside');
    symlinkSync(join(root, 'secret'), join(dir, 'target/link'));
    const files = await writeManifest(dir);
    expect(files).toEqual([
      { path: 'log.txt', size: 4, sha256: sha256('log\n') },
      { path: 'target/sub/out.txt', size: 11, sha256: sha256('built by w1') },
    ]);
    expect(JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8'))).toEqual({ files });
    expect(await listFiles(dir)).toEqual(files); // written again, the same
  });
});

describe('publishing an attempt', () => {
  test('the first attempt to finish becomes the build; a later one is dropped, never mixed in', async () => {
    const root = tempDir();
    const first = attempt(root, 2, 'w2', 'second try');
    const late = attempt(root, 1, 'w1', 'first try, its worker taken for dead');
    const final = buildDir(root, 'run1', 'b1');
    expect(await publish(first, final)).toBe(true);
    expect(await publish(late, final)).toBe(false);
    expect(readdirSync(join(root, 'run1'))).toEqual(['b1']);
    expect(readFileSync(join(final, 'target/sub/out.txt'), 'utf8')).toBe('second try');
  });

  test('what dead workers left of a published build is removed, other builds are not touched', async () => {
    const root = tempDir();
    attempt(root, 1, 'w1');
    attempt(root, 2, 'w3');
    const other = attemptDir(root, 'run1', 'b10', 1, 'w2');
    mkdirSync(other);
    expect(await publish(attempt(root, 3, 'w2'), buildDir(root, 'run1', 'b1'))).toBe(true);
    await removeStaleAttempts(root, 'run1', 'b1');
    expect(readdirSync(join(root, 'run1')).sort()).toEqual(['b1', 'b10.attempt-1.w2']);
  });
});
