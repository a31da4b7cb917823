import { readdirSync } from 'node:fs';
import { expect, test } from 'vitest';
import { expectNoLeftovers, startIsolated, untilOutput, untilProcesses } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';

/*
 * A run killed by SIGKILL cannot remove its directory in TMPDIR (sockets, and while a warm state is
 * saved the guest's RAM); the next run removes it, as `box prune` does (test/faults/box-prune).
 */

test('a run killed by SIGKILL leaves its directory; the next run removes it', { timeout: 300_000 }, async () => {
  const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo started; exec sleep 600'], { buffer: false });
  await untilOutput(child, 'started');
  child.kill('SIGKILL');
  await child;
  await untilProcesses(tmp, (running) => expect(running).toEqual([])); // QEMU and helpers die with their parent
  expect(readdirSync(tmp)).toHaveLength(1);
  const next = await runCli(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'true'], { env: { TMPDIR: tmp } });
  expect([next.exitCode, next.stderr]).toEqual([0, '']);
  expectNoLeftovers(tmp);
});
