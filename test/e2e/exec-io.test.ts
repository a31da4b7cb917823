import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput } from '../helpers/box-cli.js';
import { tempDir } from '../helpers/temp.js';

/* What `exec` gives the guest command besides its argv: boxbuild's stdin, and the environment. */

const exec = (args: string[], command: string, input?: Buffer | string) =>
  runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', ...args, '--', 'sh', '-c', command], input === undefined ? {} : { input, stdin: 'pipe' });
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('stdin', () => {
  test('echo hi | boxbuild exec -- cat', async () => {
    const result = await exec([], 'cat', 'hi\n');
    expect([result.exitCode, result.stdout]).toEqual([0, 'hi']);
  });

  // 24 MiB of random bytes: every byte arrives, end-of-file is passed on (wc ends), warm and cold.
  test.each([['warm'], ['cold']])('24 MiB of binary input, byte-exact, its end passed on (%s)', async (start) => {
    const data = randomBytes(24 * 1024 * 1024);
    const result = await exec(start === 'cold' ? ['--cold'] : [], 'tee /tmp/in | sha256sum | cut -d" " -f1; wc -c </tmp/in', data);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout.split('\n')).toEqual([sha256(data), String(data.length)]);
  });

  test('a command that reads no stdin ends although stdin never does', async () => {
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo done'], { stdin: 'pipe' });
    const feed = setInterval(() => child.stdin!.write(randomBytes(64 * 1024)), 10);
    child.stdin!.on('error', () => {});
    try {
      const result = await child;
      expect([result.exitCode, result.stdout]).toEqual([0, 'done']);
    } finally {
      clearInterval(feed);
    }
    expectNoLeftovers(tmp);
  });

  test('the command sees input as it comes, not only at its end', async () => {
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'read line; echo "got $line"; read line; echo "then $line"'], { stdin: 'pipe' });
    child.stdin!.write('first\n');
    await untilOutput(child, 'got first');
    child.stdin!.end('second\n');
    const result = await child;
    expect([result.exitCode, result.stdout]).toEqual([0, 'got first\nthen second']);
    expectNoLeftovers(tmp);
  });

  test('a build gets no stdin (/dev/null), as kiwi builds do', async () => {
    const result = await exec([], 'cat; echo end', 'not for the build\n');
    expect(result.stdout).toBe('not for the build\nend'); // exec reads it...
    const desc = join(tempDir(), 'desc');
    mkdirSync(desc);
    writeFileSync(join(desc, 'build'), '#!/bin/sh\ncat; echo end\n', { mode: 0o755 });
    const built = await runIsolated(['--box', 'debian', '--accel', 'tcg', '-q', '--', '--description', desc, '--target-dir', join(tempDir(), 'out')], { input: 'not for the build\n', stdin: 'pipe' });
    expect([built.exitCode, built.stdout]).toEqual([0, 'end']); // ...a build does not
  });
});

describe('--env', () => {
  test('NAME=VALUE, NAME from the host, a NAME the host lacks left out, the last one winning; LANG is C.UTF-8', async () => {
    const result = await runIsolated(
      ['exec', '--box', 'debian', '--accel', 'tcg', '-q', '-e', 'A=one two', '--env', 'FROM_HOST', '-e', 'NOT_ON_HOST', '-e', 'B=first', '-e', 'B=x=y', '--', 'sh', '-c', 'echo "$A|$FROM_HOST|${NOT_ON_HOST-unset}|$B|$LANG"'],
      { env: { FROM_HOST: 'host value' } },
    );
    expect([result.exitCode, result.stdout]).toEqual([0, 'one two|host value|unset|x=y|C.UTF-8']);
  });

  test('a bad name is a usage error (exit 2)', async () => {
    const result = await exec(['-e', '1X=y'], 'true');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^boxbuild: error: --env 1X=y: "1X" is not a variable name/);
  });
});

describe('a newcomer\'s command line', () => {
  test('exec without "--" (as docker run takes it: the command starts at the first word that is not an option, its options and a "--" are its own); --cpus and --memory', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--cold', '--cpus', '2', '--memory', '768M', 'sh', '-c', 'nproc; grep MemTotal /proc/meminfo; echo "$@"', 'sh', '-q', '--', '-v']);
    expect(result.exitCode, result.stderr).toBe(0);
    const [cpus, memory, args] = result.stdout.split('\n');
    expect(cpus).toBe('2');
    expect(Number(/(\d+) kB/.exec(memory!)![1]) / 1024).toBeGreaterThan(600); // 768 MiB, less what the kernel keeps
    expect(Number(/(\d+) kB/.exec(memory!)![1]) / 1024).toBeLessThan(768);
    expect(args).toBe('-q -- -v');
  });
});
