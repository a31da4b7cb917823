import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FIXTURE_PREFIX, fixtureFiles, fixtureRegistry, makeKiwiFixture } from '../../src/bench/kiwi-fixture.js';
import { BoxServer } from '../box/server.js';
import { runIsolated } from '../helpers/box-cli.js';
import { TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

let server: BoxServer;
let registry: string;
let cache: string;
let systemSha256: string;

/** The fixture Leap box, published under the real file names by a local server; a fresh cache. */
beforeAll(async () => {
  const files = await fixtureFiles(await makeKiwiFixture(TEST_CACHE));
  server = new BoxServer();
  await server.start();
  for (const [name, data] of files) server.publish(`/images/${name}`, data);
  systemSha256 = createHash('sha256').update(files.get(`${FIXTURE_PREFIX}-System.qcow2`)!).digest('hex');
  registry = join(tempDir(), 'boxes.json');
  writeFileSync(registry, fixtureRegistry(`${server.url}/images`));
  cache = tempDir('bb-kiwi-cache-');
});

afterAll(() => server?.close());

const boxbuild = (...args: string[]) => runIsolated(['--box', 'leap', '--boxes', registry, '--accel', 'tcg', ...args], { env: { BOXBUILD_CACHE_DIR: cache } });

/** A description directory (its name has spaces and non-ASCII letters) holding the given files. */
function description(files: Record<string, string> = {}): string {
  const dir = join(tempDir(), 'my descr ïption 日本');
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const target = () => join(tempDir(), 'tar get ü');
const read = (dir: string, file: string) => readFileSync(join(dir, file), 'utf8');

describe('boxbuild --box leap (a KIWI box) -- --description D --target-dir T', () => {
  test("kiwi gets system build with the global options in front; result.code is the build's status; the cached disk is never written", async () => {
    const out = target();
    const result = await boxbuild('--type', 'oem', '--', '--description', description(), '--target-dir', out, '--profile', 'b', '--add-package=vim');
    expect(result.stderr).toContain('build done');
    expect(result.exitCode).toBe(0);
    expect(read(out, 'kiwi-args').trim().split('\n')).toEqual([
      ...['--logfile', '/bundle/result.log', '--type', 'oem', '--profile', 'b', 'system', 'build', '--add-package=vim'],
      ...['--description', '/description', '--target-dir', '/result'],
    ]);
    expect(read(out, 'cmdline')).toContain(' kiwi="--type oem --profile b system build --add-package=vim" sharing_backend=_9p_');
    expect(read(out, 'mounts')).toMatch(/^kiwidescription \/description 9p .*\nkiwibundle \/bundle 9p /);
    expect(read(out, 'result.code').trim()).toBe('0');
    expect(read(out, 'result.log')).toContain('fake kiwi-ng --logfile');
    expect(JSON.parse(read(out, 'boxbuild-provenance.json'))).toMatchObject({ box: 'leap', arch: 'x86_64', sharing: '9p' });
    const box = join(cache, 'boxes/leap/x86_64/current');
    expect(createHash('sha256').update(readFileSync(join(box, `${FIXTURE_PREFIX}-System.qcow2`))).digest('hex')).toBe(systemSha256);
    expect(existsSync(join(box, `${FIXTURE_PREFIX}-1.0.0-Kernel-Build1.1.kernel.vmlinux`))).toBe(true);
  });

  test("a failed build gives its exit status", async () => {
    const result = await boxbuild('-q', '--', '--description', description({ 'exit-code': '3' }), '--target-dir', target());
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toBe('');
  });

  test('a box that powers off without writing result.code fails, even with a stale result.code in the target directory', async () => {
    const out = target();
    mkdirSync(out);
    writeFileSync(join(out, 'result.code'), '0\n');
    const result = await boxbuild('--', '--description', description({ poweroff: '' }), '--target-dir', out);
    expect(result.exitCode).toBe(76);
    expect(result.stderr).toMatch(/error: the box stopped without writing result.code/);
    expect(existsSync(join(out, 'result.code'))).toBe(false);
  });

  test('virtiofs: the tags, --shared-path at the same path (unicode), --kiwi-version', async () => {
    const shared = join(tempDir(), 'répertoire-日本');
    mkdirSync(shared);
    writeFileSync(join(shared, 'marker'), 'shared path seen\n');
    const out = target();
    const result = await boxbuild('--virtiofs-sharing', '--shared-path', shared, '--kiwi-version', '9.24.1', '-q', '--', '--description', description(), '--target-dir', out);
    expect(result.exitCode).toBe(0);
    expect(read(out, 'mounts')).toContain('kiwidescription /description virtiofs');
    expect(read(out, 'mounts')).toContain('kiwibundle /bundle virtiofs');
    expect(read(out, 'custom-marker')).toBe('shared path seen\n');
    expect(read(out, 'cmdline')).toContain(` kiwi_version=_9.24.1_ custom_mount=_${shared}_ sharing_backend=_virtiofs_`);
  });

  test('sshfs: each share on the port named after its tag', async () => {
    const out = target();
    const result = await boxbuild('--sshfs-sharing', '-q', '--', '--description', description(), '--target-dir', out);
    expect(result.exitCode).toBe(0);
    expect(read(out, 'mounts')).toMatch(/ \/description fuse\.sshfs .*\n.* \/bundle fuse\.sshfs /);
    expect(read(out, 'cmdline')).toContain('sharing_backend=_sshfs_');
  });

  test('QEMU that cannot start is a failure, not a success', async () => {
    const result = await boxbuild('--cpu', 'nosuchcpu', '--', '--description', description(), '--target-dir', target());
    expect(result.exitCode).toBe(71);
    expect(result.stderr).toMatch(/error: the box did not run: QEMU exited with status 1: .*nosuchcpu/);
  });

  test('what the contract cannot carry is refused before anything starts', async () => {
    const build = ['--', '--description', description(), '--target-dir', target()];
    const refused = [
      [[...build, '--set-container-tag=a"b'], /cannot be passed to a KIWI box: it holds a double quote/],
      [[...build, `--add-package=${'x'.repeat(2100)}`], /the kernel command line would be \d+ bytes, more than the 2047/],
      [['--shared-path', tempDir('with space '), ...build], /--shared-path .*letters, digits/],
      [['--container', ...build], /--accel: only for a VM, not with --container/],
    ] as const;
    for (const [args, message] of refused) {
      const result = await boxbuild(...args);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
