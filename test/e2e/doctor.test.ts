import { describe, expect, test } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';

interface Check {
  name: string;
  verdict: string;
  detail: string;
  fix?: string;
  required: boolean;
}

const doctor = async (env: Record<string, string> = {}) => {
  const result = await runCli(['doctor', '--json'], { env });
  return { exitCode: result.exitCode, checks: JSON.parse(result.stdout) as Check[] };
};

describe('boxbuild doctor', () => {
  test('on this host: everything a run needs is there (exit 0), KVM as the runs see it', async () => {
    const { exitCode, checks } = await doctor();
    expect(exitCode).toBe(0);
    expect(checks.map((check) => check.name)).toEqual(expect.arrayContaining(['QEMU for x86_64', 'KVM', 'virtiofs sharing', 'sshfs sharing', 'space for boxes']));
    expect(checks.find((check) => check.name === 'QEMU for x86_64')).toMatchObject({ verdict: 'ok', detail: expect.stringMatching(/^QEMU emulator version/) });
    expect(checks.filter((check) => check.verdict !== 'ok').every((check) => check.fix)).toBe(true);
    const plain = await runCli(['doctor']);
    expect(plain.stdout).toMatch(/^ok {6}Node\.js/m);
  });

  test('with nothing on PATH: QEMU and the rest are missing, each with its fix, and it exits 1', async () => {
    const { exitCode, checks } = await doctor({ PATH: tempDir() });
    expect(exitCode).toBe(1);
    expect(checks.find((check) => check.name === 'QEMU for x86_64')).toEqual({ name: 'QEMU for x86_64', verdict: 'missing', detail: 'not found', fix: 'apt-get install qemu-system-x86', required: true });
    expect(checks.find((check) => check.name === 'qemu-img (system boxes)')).toMatchObject({ verdict: 'missing', fix: 'apt-get install qemu-utils' });
  });
});
