import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, startIsolated, untilOutput } from '../helpers/box-cli.js';
import { processesMentioning, tempDir } from '../helpers/temp.js';

/** The pids of this run's confined sharing daemons (their unshare and everything below it). */
function confinedDaemons(tmp: string): number[] {
  return processesMentioning(tmp)
    .map((line) => Number(line.split(' ')[0]))
    .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('unshare\0'));
}

describe.each(['virtiofs', 'sshfs'])('a %s daemon that dies during the run', (backend) => {
  test('ends the run at once with one line naming it (exit 71), leaving nothing behind', async () => {
    const dir = tempDir();
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', `--sharing=${backend}`, '--share', `${dir}:/out`, '--', 'sh', '-c', 'echo started; sleep 600']);
    await untilOutput(child, 'started');
    const daemons = confinedDaemons(tmp);
    expect(daemons.length).toBeGreaterThan(0);
    for (const pid of daemons) process.kill(pid, 'SIGKILL');
    const result = await child;
    expect(result.exitCode).toBe(71);
    expect(String(result.stderr)).toMatch(new RegExp(`^boxbuild: error: ${backend === 'sshfs' ? 'sftp-server' : 'virtiofsd'} for share "share0" stopped during the run`, 'm'));
    expectNoLeftovers(tmp);
  });
});
