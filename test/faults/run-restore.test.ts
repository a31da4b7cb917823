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

test('a restore held up for 12 s still restores, and the state is kept', { timeout: 180_000 }, async () => {
  await runIsolated([...exec, '-q', '--', 'true']); // a saved state to restore
  const { tmp, child } = startIsolated([...exec, '-v', '--', 'echo', 'warm']);
  await untilOutput({ stdout: child.stderr }, 'restoring the saved VM');
  const qemu = await qemuOf(tmp);
  process.kill(qemu, 'SIGSTOP');
  await sleep(12_000); // the load: QEMU gets no CPU at all meanwhile
  process.kill(qemu, 'SIGCONT');
  const result = await child;
  expect(result.exitCode).toBe(0);
  expect(result.stdout).toBe('warm');
  expect(result.stderr).toMatch(/guest agent ready \(restored\)/);
  expect(result.stderr).not.toMatch(/booting cold/);
  expectNoLeftovers(tmp);
  const again = await runIsolated([...exec, '-v', '--', 'true']);
  expect(again.stderr).toMatch(/guest agent ready \(restored\)/);
});
