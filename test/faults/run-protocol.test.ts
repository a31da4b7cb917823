import { appendFileSync, cpSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, test } from 'vitest';
import { writeCpio } from '../../src/guest/cpio.js';
import { expectNoLeftovers, startIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * A guest that breaks the protocol on its control port: boxbuild ends the run with one line, exit 71,
 * the VM stopped, nothing left, and its memory bounded. Any root in a guest can write there (the
 * agent's descriptor is one pidfd_getfd away); here the box's agent leaves it open to the command
 * (fd 3), so that a shell one-liner can flood it.
 */

/** The peak memory (VmHWM, MiB) of process `pid` until `ended` settles, sampled every 100 ms. */
async function peakMiB(pid: number, ended: Promise<unknown>): Promise<number> {
  let done = false;
  void ended.finally(() => (done = true)).catch(() => {});
  let peak = 0;
  while (!done) {
    try {
      peak = Math.max(peak, Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024);
    } catch {
      // it has just ended
    }
    await sleep(100);
  }
  return peak;
}

let cache: string;

beforeAll(() => {
  // The test cache's debian box in a cache of its own, its initramfs followed by a second archive
  // that replaces the agent (the kernel unpacks both, the later file wins).
  cache = tempDir('bb-cache-');
  const source = join(TEST_CACHE, 'boxes/debian/x86_64');
  const version = readlinkSync(join(source, 'current'));
  const box = join(cache, 'boxes/debian/x86_64');
  cpSync(join(source, version), join(box, version), { recursive: true });
  symlinkSync(version, join(box, 'current'));
  const agent = readFileSync(join(REPO, 'src/guest/files/agent'), 'utf8');
  const leaky = agent.replace(') >&7 2>&8 3>&- ', ') >&7 2>&8 ');
  expect(leaky).not.toBe(agent);
  appendFileSync(join(box, version, 'initrd'), writeCpio([{ type: 'file', path: 'usr/lib/boxbuild/agent', data: Buffer.from(leaky), mode: 0o755 }]));
});

describe('a guest that floods its control port', () => {
  test.each([
    ['one endless line', 'tr "\\0" x </dev/zero >&3', 'a line longer than 64 KiB'],
    ['endless lines the agent would send, never asked for', 'yes "READY 1" >&3', 'more than 16 messages unasked for'],
    ['endless lines of garbage', 'yes >&3', 'a line it does not know: "y"'],
  ])('%s: one line, exit 71, nothing left, memory bounded', async (_, flood, what) => {
    const args = ['exec', '--box', 'debian', '--accel', 'tcg', '--cold', '-q', '--no-update-check', '--timeout', '60s', '--', 'sh', '-c', flood];
    const { tmp, child } = startIsolated(args, { env: { BOXBUILD_CACHE_DIR: cache } });
    const [result, peak] = await Promise.all([child, peakMiB(child.pid!, child)]);
    expect([result.exitCode, result.stderr]).toEqual([71, `boxbuild: error: the guest broke the protocol on its control port (${what})`]);
    expect(peak).toBeLessThan(300);
    expectNoLeftovers(tmp);
  });
});
