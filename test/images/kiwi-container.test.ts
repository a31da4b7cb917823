import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { fetchTestBox } from '../helpers/boxes.js';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * A real kiwi build in a podman container of the debian-kiwi box (--container, podman as root, as
 * kiwi's container mode has it): the image made of the box's disk in a VM, then kiwi at the host's
 * speed with loop devices from the host's /dev; the same result as the box's VM build.
 */

describe.runIf(process.getuid!() === 0)('debian-kiwi box in a container, x86_64', () => {
  beforeAll(() => fetchTestBox('debian-kiwi', 'x86_64'), 3_600_000);

  test('kiwi-ng system build makes the root tarball: its log streamed, result bundled, result.code 0, kiwi\'s cache kept', { timeout: 3_600_000 }, async () => {
    const target = join(tempDir(), 'out');
    const result = await runIsolated(['--box', 'debian-kiwi', '--container', '--type', 'tbz', '--', '--description', join(REPO, 'examples/debian-kiwi'), '--target-dir', target], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain("kiwi runs as root with CAP_SYS_ADMIN, CAP_MKNOD, AUDIT_* and the host's /dev");
    expect(result.stdout + result.stderr).toMatch(/Creating XZ compressed tar archive/);
    expect(readFileSync(join(target, 'result.code'), 'utf8').trim()).toBe('0');
    expect(readFileSync(join(target, 'result.log'), 'utf8')).toMatch(/Creating XZ compressed tar archive/);
    const tarball = readdirSync(target).find((name) => /^debian-bookworm\.x86_64-12\.0\.0-0\.tar\.xz$/.test(name));
    expect(tarball, readdirSync(target).join(' ')).toBeDefined();
    expect(existsSync(join(target, `${tarball}.sha256`))).toBe(true);
    const { stdout: osRelease } = await execa('tar', ['-xJOf', join(target, tarball!), 'usr/lib/os-release']);
    expect(osRelease).toContain('VERSION_CODENAME=bookworm');
    const provenance = JSON.parse(readFileSync(join(target, 'boxbuild-provenance.json'), 'utf8')) as Record<string, unknown>;
    expect(provenance).toMatchObject({ box: 'debian-kiwi', accelerator: 'container', exitCode: 0 });
    expect(readdirSync(join(TEST_CACHE, 'kiwi-cache', 'debian-kiwi-x86_64')).length).toBeGreaterThan(0);
  });
});
