import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from './box-cli.js';
import { fetchTestBox } from './boxes.js';
import { REPO, TEST_CACHE } from './env.js';
import { tempDir } from './temp.js';

const ELF_MACHINE = { x86_64: 0x3e, aarch64: 0xb7 } as const;

/** The cached system disk of the debian-system box of an architecture. */
export const baseDisk = (arch: string, cache = TEST_CACHE) => join(cache, 'boxes/debian-system', arch, 'current/system.qcow2');

export async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The debian-system box of an architecture builds examples/c-hello with make and gcc, its base disk untouched. */
export function describeSystemBox(arch: keyof typeof ELF_MACHINE): void {
  describe(`debian-system box, ${arch}`, () => {
    // Made once per test cache: debootstrap (its second stage in an emulated VM for a foreign arch).
    beforeAll(() => fetchTestBox('debian-system', arch), 1_800_000);

    test('a C program with a Makefile is built with make and gcc into an ELF binary for the arch', async () => {
      const target = join(tempDir(), 'out');
      const before = await sha256(baseDisk(arch));
      const result = await runIsolated(['--box', 'debian-system', '--arch', arch, '-q', '--', '--description', join(REPO, 'examples/c-hello'), '--target-dir', target]);
      expect(result.stderr).toBe('');
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toMatch(/c-hello: make took [\d.]+ s in the guest/);
      const binary = readFileSync(join(target, 'hello'));
      expect(binary.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      expect(binary.readUInt16LE(18)).toBe(ELF_MACHINE[arch]);
      expect(await sha256(baseDisk(arch))).toBe(before);
    });
  });
}
