import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput } from '../helpers/box-cli.js';
import { TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * A timeout or an abort ends the run cleanly whenever it comes: no QEMU, no run directory, the right
 * exit status, and no half-saved VM state. A signal is placed by the `-v` lines; --timeout goes
 * through the same run signal.
 */

const exec = ['exec', '--box', 'debian', '--accel', 'tcg'];
const statesDir = join(TEST_CACHE, 'states');
const statesBefore = new Set(readdirSync(statesDir, { withFileTypes: false }).map(String));

// Runs with an unusual memory size have a VM shape of their own: their states are removed afterwards.
const freshShape = () => ['--box-memory', `${700 + Math.floor(Math.random() * 300)}M`];
afterAll(() => {
  for (const name of readdirSync(statesDir)) if (!statesBefore.has(name)) rmSync(join(statesDir, name), { recursive: true, force: true });
});

/** Starts `boxbuild exec -v ARGS`, sends `signal` once stderr shows `line`, and returns the finished run. */
async function signalAt(args: string[], line: string, signal: NodeJS.Signals) {
  const { tmp, child } = startIsolated([...exec, '-v', ...args]);
  await untilOutput({ stdout: child.stderr }, line);
  child.kill(signal);
  const result = await child;
  expectNoLeftovers(tmp);
  return { exitCode: result.exitCode, stderr: String(result.stderr) };
}

const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('boxbuild: error:'));

describe('--timeout and aborts at any moment', () => {
  test('a duration a timer cannot hold is refused (exit 2)', async () => {
    const result = await runIsolated([...exec, '--timeout', '600h', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe('boxbuild: error: --timeout: 600h is too long; at most 2147483647 ms (about 24.8 days)');
    expect((await runIsolated([...exec, '--boot-timeout', '9999999s', '--', 'true'])).exitCode).toBe(2);
  });

  test('--timeout 1ms fires before QEMU exists', async () => {
    const result = await runIsolated([...exec, '-q', '--timeout', '1ms', '--', 'true']);
    expect(result.exitCode).toBe(124);
    expect(result.stderr).toBe('boxbuild: error: the run did not finish within --timeout 0.001 s (it was getting box debian (x86_64))');
  });

  test('an abort while the booted VM is being saved for warm starts', async () => {
    const result = await signalAt([...freshShape(), '--', 'true'], 'saving the booted VM', 'SIGTERM');
    expect(result.exitCode).toBe(143);
    expect(errorLines(result.stderr)).toEqual(['boxbuild: error: terminated; the VM was stopped']);
    // No state half-written: whatever the new shape's directory holds is a whole state.
    for (const name of readdirSync(statesDir).filter((n) => !statesBefore.has(n) && n.endsWith('.d'))) {
      for (const id of readdirSync(join(statesDir, name))) expect(readdirSync(join(statesDir, name, id))).toContain('state.json');
    }
  });

  test('an abort while a saved state is restored', async () => {
    await runIsolated([...exec, '-q', '--', 'true']); // a state to restore
    const result = await signalAt(['--', 'true'], 'restoring the saved VM', 'SIGINT');
    expect(result.exitCode).toBe(130);
    expect(errorLines(result.stderr)).toEqual(['boxbuild: error: interrupted; the VM was stopped']);
  });

  test('an abort during the teardown keeps the build\'s status and stops the VM', async () => {
    const result = await signalAt(['--', 'sh', '-c', 'exit 3'], 'timing: command finished', 'SIGTERM');
    expect(result.exitCode).toBe(3);
    expect(errorLines(result.stderr)).toEqual([]);
  });

  test('--timeout bounds getting the box too: making it on a fresh cache, waiting for the lock another boxbuild holds', async () => {
    const cache = tempDir('cache-');
    const making = await runIsolated([...exec, '-q', '--timeout', '3s', '--', 'true'], { env: { BOXBUILD_CACHE_DIR: cache } });
    expect([making.exitCode, making.stderr]).toEqual([124, 'boxbuild: error: the run did not finish within --timeout 3 s (it was getting box debian (x86_64))']);
    expect(readdirSync(join(cache, 'tmp/debian/x86_64'))).toEqual([]); // the making's work is removed
    // Another boxbuild making the box holds its lock: the wait counts.
    mkdirSync(join(cache, 'locks'), { recursive: true });
    const holder = execa('sh', ['-c', 'exec 9>"$0" && flock -x 9 && echo locked && exec sleep 600', join(cache, 'locks/debian-x86_64.lock')], { buffer: false });
    await new Promise((resolve) => holder.stdout!.once('data', resolve));
    try {
      const waiting = await runIsolated([...exec, '-q', '--timeout', '3s', '--', 'true'], { env: { BOXBUILD_CACHE_DIR: cache } });
      expect(waiting.exitCode).toBe(124);
      expect(waiting.stderr).toMatch(/boxbuild: error: the run did not finish within --timeout 3 s \(it was getting box debian \(x86_64\)\)$/);
    } finally {
      holder.kill('SIGKILL');
      await holder.catch(() => {});
    }
  });

  test('a timeout while the command runs', async () => {
    const result = await runIsolated([...exec, '-q', '--timeout', '3s', '--', 'sleep', '600']);
    expect(result.exitCode).toBe(124);
    expect(errorLines(result.stderr)).toEqual(['boxbuild: error: the run did not finish within --timeout 3 s (it was running the command); the VM was stopped']);
  });
});
