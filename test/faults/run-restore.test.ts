import { setTimeout as sleep } from 'node:timers/promises';
import { expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput } from '../helpers/box-cli.js';
import { processesMentioning } from '../helpers/temp.js';

/*
 * A restore that is only slow (a loaded host: here QEMU is stopped for longer than the old fixed
 * 10 s restore deadline) goes on and keeps the saved state; only a state QEMU refuses is dropped.
 */

const exec = ['exec', '--box', 'debian', '--accel', 'tcg'];

/** The pid of the QEMU a run started in its private TMPDIR, once it exists. */
async function qemuOf(tmp: string): Promise<number> {
  for (;;) {
    const qemu = processesMentioning(tmp).find((line) => line.includes('qemu-system'));
    if (qemu) return Number(qemu.split(' ')[0]);
    await sleep(10);
  }
}

/** Starts a warm run and stops its QEMU once it restores; `resume` lets it go on. */
async function heldRestore(...options: string[]) {
  await runIsolated([...exec, '-q', ...options, '--', 'true']); // a saved state to restore
  const { tmp, child } = startIsolated([...exec, '-v', ...options, '--', 'echo', 'warm']);
  await untilOutput({ stdout: child.stderr }, 'restoring the saved VM');
  const qemu = await qemuOf(tmp);
  process.kill(qemu, 'SIGSTOP');
  return { tmp, child, resume: () => process.kill(qemu, 'SIGCONT') };
}

test('a restore held up for 12 s still restores, and the state is kept', { timeout: 180_000 }, async () => {
  const { tmp, child, resume } = await heldRestore();
  await sleep(12_000); // the load: QEMU gets no CPU at all meanwhile
  resume();
  const result = await child;
  expect(result.exitCode).toBe(0);
  expect(result.stdout).toBe('warm');
  expect(result.stderr).toMatch(/guest agent ready \(restored\)/);
  expect(result.stderr).not.toMatch(/booting cold/);
  expectNoLeftovers(tmp);
  const again = await runIsolated([...exec, '-v', '--', 'true']);
  expect(again.stderr).toMatch(/guest agent ready \(restored\)/);
});

test('a restored guest that never answers: one cold boot, whose state replaces the one that failed', { timeout: 180_000 }, async () => {
  // --boot-timeout is the wall-clock limit of a restore that makes no progress (QEMU stays stopped).
  const { tmp, child } = await heldRestore('--box-memory', '768M', '--boot-timeout', '20s');
  const result = await child;
  expect(result.stderr).toMatch(/the restored guest did not answer .*booting cold and saving the state anew/);
  expect(String(result.stderr).match(/restoring the saved VM/g)).toHaveLength(1);
  expect(result.stdout).toBe('warm');
  expect(result.exitCode).toBe(0);
  expectNoLeftovers(tmp);
  const again = await runIsolated([...exec, '-v', '--box-memory', '768M', '--', 'true']);
  expect(again.stderr).toMatch(/guest agent ready \(restored\)/);
});
