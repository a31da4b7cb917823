import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { fetchTestBox } from '../helpers/boxes.js';
import { backgroundBuild } from '../helpers/background-build.js';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import { REPO } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';
import { onTerminal } from '../helpers/terminal.js';

const EXAMPLE = join(REPO, 'examples/debian-kiwi');

/** A real kiwi build in the debian-kiwi box (made once per test cache, without root). */
describe('debian-kiwi box, x86_64', () => {
  beforeAll(() => fetchTestBox('debian-kiwi', 'x86_64'), 3_600_000);

  // The build (about 17 minutes) ran in the background beside the other files (test/slow-boxes.ts).
  test('kiwi-ng system build makes the root tarball: its log streamed, result bundled, result.code 0, packages through the cache', { timeout: 3_600_000 }, async () => {
    const { result, target, tmp } = await backgroundBuild('test/e2e/kiwi-debian.test.ts');
    expectNoLeftovers(tmp);
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

  test('--debug-shell: a failed kiwi build is followed by a shell in the box on the terminal; the run ends with the build\'s status', { timeout: 600_000 }, async () => {
    const description = tempDir();
    cpSync(EXAMPLE, description, { recursive: true });
    writeFileSync(join(description, 'config.xml'), '<?xml version="1.0"?>\n<image schemaversion="7.4" name="broken"><no-such-element/></image>\n');
    const run = onTerminal(['--box', 'debian-kiwi', '-q', '--debug-shell', '--', '--description', description, '--target-dir', join(tempDir(), 'out')]);
    await run.until('here is a shell in the box');
    run.type('echo "code $(cat /bundle/result.code) in $(pwd) on $(tty)"; ls /description\r');
    await run.until('code ');
    run.type('exit\r');
      const result = await run.child;
    expectNoLeftovers(run.tmp);
    const code = /code (\d+) in \/description on \/dev\/ttyS0/.exec(run.shown());
    expect(code, run.shown()).not.toBeNull();
    expect(Number(code![1])).toBeGreaterThan(0);
    expect(result.exitCode).toBe(Number(code![1]));
    expect(run.shown()).toContain('config.xml');
    expect(run.shown()).toContain('MODE-KEPT');
  });
});
