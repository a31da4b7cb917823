import { describe, expect, test } from 'vitest';
import { findBox, loadRegistry } from '../../../src/box/registry.js';
import { PROFILES } from '../../../src/qemu/profiles.js';
import { kernelCmdline } from '../../../src/runner/stages.js';

describe('the kernel command line', () => {
  const registry = loadRegistry();
  const line = (arch: 'x86_64' | 'aarch64', accel: 'tcg' | 'kvm', debug = false) =>
    kernelCmdline(findBox(registry, 'debian', arch).box, arch, { profile: PROFILES[arch], console: 'serial', accel }, debug).split(' ');

  test("an x86_64 guest under TCG keeps time by the ACPI PM timer (its TSC's calibration is the host load's); with KVM and on aarch64 the usual clock", () => {
    expect(line('x86_64', 'tcg')).toContain('clocksource=acpi_pm');
    expect(line('x86_64', 'kvm')).not.toContain('clocksource=acpi_pm');
    expect(line('aarch64', 'tcg').some((word) => word.startsWith('clocksource='))).toBe(false);
  });

  test('--box-debug takes quiet off and asks the guest files to trace', () => {
    expect(line('x86_64', 'tcg')).toContain('quiet');
    expect(line('x86_64', 'tcg', true)).toEqual(expect.arrayContaining(['boxbuild.debug']));
    expect(line('x86_64', 'tcg', true)).not.toContain('quiet');
  });
});
