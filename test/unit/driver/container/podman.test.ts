import { describe, expect, test } from 'vitest';
import { podmanEnvironment, ulimitOptions } from '../../../../src/driver/container/podman.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             96367                96367                processes
Max open files            1024                 20000                files
`;

describe('podman as boxbuild runs it', () => {
  test('limits: the hard limit of open files; processes no more than podman itself keeps (32768)', () => {
    expect(ulimitOptions(LIMITS)).toEqual(['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768']);
    expect(ulimitOptions(LIMITS.replace('96367                96367', '4096                 4096'))).toEqual(['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096']);
    expect(ulimitOptions(LIMITS.replace(/Max open files.*\n/, 'Max open files            unlimited            unlimited            files\n'))).toEqual(['--ulimit', 'nproc=32768:32768']);
  });

  test("its environment is boxbuild's without the run's TMPDIR", () => {
    expect(podmanEnvironment({ PATH: '/bin', TMPDIR: '/tmp/run', HOME: '/h' })).toEqual({ PATH: '/bin', HOME: '/h' });
  });
});
