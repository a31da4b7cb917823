import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { fetchTestBox } from '../helpers/boxes.js';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

const EXAMPLE = join(REPO, 'examples/debian-kiwi');

/** A real kiwi build in the debian-kiwi box (made once per test cache, without root). */
describe('debian-kiwi box, x86_64', () => {
  beforeAll(() => fetchTestBox('debian-kiwi', 'x86_64'), 3_600_000);

  test('kiwi-ng system build makes the root tarball: its log streamed, result bundled, result.code 0, packages through the cache', { timeout: 3_600_000 }, async () => {
    const target = join(tempDir(), 'out');
    const result = await runIsolated(['--box', 'debian-kiwi', '--type', 'tbz', '--', '--description', EXAMPLE, '--target-dir', target], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });
    expect(result.exitCode, result.stderr).toBe(0);
    // kiwi's own log lines, as the box's console printed them
    expect(result.stdout).toMatch(/Creating XZ compressed tar archive|Bundle/);
    expect(result.stderr).toMatch(/package cache: \d+ packages? \([^)]+\) from the cache, \d+ packages? \([^)]+\) downloaded and kept/);
    expect(readFileSync(join(target, 'result.code'), 'utf8').trim()).toBe('0');
    expect(readFileSync(join(target, 'result.log'), 'utf8')).toMatch(/Creating XZ compressed tar archive/);
    const tarball = readdirSync(target).find((name) => /^debian-bookworm\.x86_64-12\.0\.0-0\.tar\.xz$/.test(name));
    expect(tarball, readdirSync(target).join(' ')).toBeDefined();
    expect(existsSync(join(target, `${tarball}.sha256`))).toBe(true);
    const { stdout: listing } = await execa('tar', ['-tJf', join(target, tarball!)]);
    expect(listing).toMatch(/^etc\/os-release$/m);
    expect(listing).toMatch(/^usr\/bin\/systemctl$/m);
    const { stdout: osRelease } = await execa('tar', ['-xJOf', join(target, tarball!), 'usr/lib/os-release']);
    expect(osRelease).toContain('VERSION_CODENAME=bookworm');
  });
});
