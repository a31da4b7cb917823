import { describe, expect, test } from 'vitest';
import type { InstalledBox } from '../../../../src/box/cache.js';
import { vmShape } from '../../../../src/driver/qemu/warm.js';
import type { VmSpec } from '../../../../src/qemu/argv.js';
import { PROFILES } from '../../../../src/qemu/profiles.js';

const spec = (overrides: Partial<VmSpec> = {}): VmSpec => ({
  profile: PROFILES.x86_64,
  accel: 'tcg',
  memoryMiB: 1024,
  cpus: 1,
  kernel: '/cache/boxes/debian/x86_64/v1/kernel',
  initrd: '/cache/boxes/debian/x86_64/v1/initrd',
  cmdline: 'console=ttyS0 panic=-1',
  consoleSocket: '/tmp/boxbuild-run1/console.sock',
  console: 'serial',
  ports: [{ name: 'org.boxbuild.ctl', socket: '/tmp/boxbuild-run1/ctl.sock' }],
  ...overrides,
});

const box = (kernelSha: string): InstalledBox => ({
  dir: '/cache/boxes/debian/x86_64/v1',
  manifest: { name: 'debian', arch: 'x86_64', version: '1', files: { kernel: { name: 'kernel', sha256: kernelSha, size: 1 }, initrd: { name: 'initrd', sha256: 'i', size: 1 } }, sources: {} },
});

describe('the shape of a VM (which saved state it may restore)', () => {
  test("another run's private directory and another share directory behind the same tag: the same shape", () => {
    const shares = [{ hostPath: '/home/a/src', tag: 'description', guestPath: '/description', readOnly: true }];
    const other = [{ hostPath: '/home/b/other', tag: 'description', guestPath: '/description', readOnly: true }];
    const second = spec({ consoleSocket: '/tmp/boxbuild-run2/console.sock', ports: [{ name: 'org.boxbuild.ctl', socket: '/tmp/boxbuild-run2/ctl.sock' }] });
    const withShare = (s: VmSpec, path: string) => ({ ...s, extraArgs: ['-fsdev', `local,id=description,path=${path}`] });
    expect(vmShape(withShare(spec(), '/home/a/src'), '/tmp/boxbuild-run1', shares, box('k1'))).toBe(
      vmShape(withShare(second, '/home/b/other'), '/tmp/boxbuild-run2', other, box('k1')),
    );
  });

  test('another box version (its files), memory size or machine: another shape, so its state is never restored', () => {
    const base = vmShape(spec(), '/tmp/boxbuild-run1', [], box('k1'));
    expect(vmShape(spec(), '/tmp/boxbuild-run1', [], box('k2'))).not.toBe(base);
    expect(vmShape(spec({ memoryMiB: 768 }), '/tmp/boxbuild-run1', [], box('k1'))).not.toBe(base);
    expect(vmShape(spec({ cpus: 2 }), '/tmp/boxbuild-run1', [], box('k1'))).not.toBe(base);
    expect(vmShape(spec({ network: 'filtered' }), '/tmp/boxbuild-run1', [], box('k1'))).not.toBe(base);
  });
});
