import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/** The arm64 Linux boot image header carries the magic "ARM\x64" at offset 56. */
const isArm64Image = (path: string) => readFileSync(path).subarray(56, 60).equals(Buffer.from('ARM\x64', 'latin1'));

describe('aarch64 initramfs box, under emulation', () => {
  test('exec runs in an aarch64 guest and says emulation is slower', async () => {
    const result = await runIsolated(['exec', '--arch', 'aarch64', '--box', 'debian', '--', 'uname', '-m']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('aarch64');
    expect(result.stderr).toContain('aarch64 on a x86_64 host runs under software emulation (TCG)');
  });

  test('a build writes its artifact; the box boots an arm64 kernel image', async () => {
    const target = join(tempDir(), 'out');
    const result = await runIsolated(['--aarch64', '--box', 'debian', '-q', '--', '--description', join(REPO, 'examples/hello'), '--target-dir', target]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('hello: building in aarch64 guest');
    expect(readFileSync(join(target, 'hello/built-on.txt'), 'utf8')).toContain('aarch64');
    expect(isArm64Image(join(TEST_CACHE, 'boxes/debian/aarch64/current/kernel'))).toBe(true);
  });

  test.each(['9p', 'virtiofs', 'sshfs'])('%s mounts', async (backend) => {
    const dir = tempDir();
    const result = await runIsolated(['exec', '--aarch64', '--box', 'debian', '-q', `--sharing=${backend}`, '--share', `${dir}:/out`, '--', 'sh', '-c', 'uname -m > /out/arch']);
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'arch'), 'utf8')).toBe('aarch64\n');
  });

  test('--accel kvm is refused for a foreign architecture', async () => {
    const result = await runIsolated(['exec', '--aarch64', '--box', 'debian', '--accel', 'kvm', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('--accel kvm: a aarch64 guest cannot use KVM on this x86_64 host');
  });

  test('two builds of different architectures at the same time', async () => {
    const runs = await Promise.all(
      ['x86_64', 'aarch64'].map((arch) => runIsolated(['exec', '--arch', arch, '--box', 'debian', '--accel', 'tcg', '-q', '--', 'uname', '-m'])),
    );
    expect(runs.map((run) => [run.exitCode, run.stdout])).toEqual([
      [0, 'x86_64'],
      [0, 'aarch64'],
    ]);
  });
});
