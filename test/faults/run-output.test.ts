import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, startIsolated } from '../helpers/box-cli.js';
import { tempDir } from '../helpers/temp.js';

/*
 * Every byte a command writes reaches boxbuild's stdout and stderr before it exits 0, also when the
 * reader is slow: the guest's output then waits in the virtio-serial rings while the command ends.
 */

/** Runs per case: the race at a run's end is the same either way; a warm run costs a fifth of a cold boot. */
const RUNS = { warm: 10, cold: 5 } as const;
const share = tempDir();
const data = randomBytes(2 * 1024 * 1024);
writeFileSync(join(share, 'data'), data);
const expected = createHash('sha256').update(data).digest('hex');

/** sha256 of a stream read by a slow consumer: it stops for 0.3 s after the first chunk (the guest meanwhile fills the virtio-serial rings and blocks). */
function slowHash(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  let paused = false;
  stream.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    if (paused) return;
    paused = true;
    stream.pause();
    setTimeout(() => stream.resume(), 300);
  });
  return new Promise((resolve) => stream.on('end', () => resolve(hash.digest('hex'))));
}

describe.each([
  ['x86_64', 'warm'],
  ['x86_64', 'cold'],
  ['aarch64', 'warm'],
  ['aarch64', 'cold'],
] as const)('debian %s, %s start: 2 MiB on stdout and stderr', (arch, start) => {
  test(`${RUNS[start]} runs pass on every byte`, { timeout: RUNS[start] * 60_000 }, async () => {
    for (let run = 0; run < RUNS[start]; run++) {
      const args = ['exec', '--box', 'debian', '--arch', arch, '--accel', 'tcg', '-q', ...(start === 'cold' ? ['--cold'] : [])];
      const { tmp, child } = startIsolated([...args, '--share', `${share}:/share:ro`, '--', 'sh', '-c', 'cat /share/data; cat /share/data >&2'], { buffer: false });
      const [stdout, stderr, result] = await Promise.all([slowHash(child.stdout!), slowHash(child.stderr!), child]);
      expect({ run, exitCode: result.exitCode, stdout, stderr }).toEqual({ run, exitCode: 0, stdout: expected, stderr: expected });
      expectNoLeftovers(tmp);
    }
  });
});
