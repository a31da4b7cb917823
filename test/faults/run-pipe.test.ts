import { closeSync, openSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput } from '../helpers/box-cli.js';

/* A closed stdout (`boxbuild … | head -2`) ends the run as SIGPIPE would: VM stopped, nothing left, 141, no stack trace. */

describe('the reader of stdout goes away', () => {
  test('exec -- seq 1 100000 | head -2', async () => {
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'seq', '1', '100000'], { buffer: false });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await untilOutput(child, '2\n');
    child.stdout!.destroy(); // like head -2 exiting
    const result = await child;
    expect(result.exitCode).toBe(141);
    expect(stderr).toBe('');
    expectNoLeftovers(tmp);
  });

  test('box list --json | true', async () => {
    const { tmp, child } = startIsolated(['box', 'list', '--json', '--no-update-check'], { buffer: false });
    child.stdout!.destroy(); // like true, which reads nothing
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const result = await child;
    expect({ exitCode: result.exitCode, stderr }).toEqual({ exitCode: 141, stderr: '' });
    expectNoLeftovers(tmp);
  });
});

/* Output that cannot be written (a full disk, an I/O error) ends the run the same way, but says so: one line, exit 74. */

describe('stdout or stderr cannot be written', () => {
  // Every write to it fails with ENOSPC. (execa passes any descriptor on; its types name only 1 and 2.)
  const full = openSync('/dev/full', 'w') as 1;
  afterAll(() => closeSync(full));
  const error = (stream: string) => new RegExp(`^boxbuild: error: cannot write the output \\(${stream}\\): ENOSPC: no space left on device, write$`);

  test('exec -- head -c 5000000 /dev/zero > /dev/full', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'head', '-c', '5000000', '/dev/zero'], { stdout: full });
    expect(result.exitCode).toBe(74);
    expect(result.stderr).toMatch(error('stdout'));
  });

  test('exec -- sh -c "head -c 5000000 /dev/zero >&2" 2> /dev/full', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'head -c 5000000 /dev/zero >&2; echo done'], { stderr: full });
    expect([result.exitCode, result.stdout]).toEqual([74, '']);
  });

  test('box list --json > /dev/full', async () => {
    const result = await runIsolated(['box', 'list', '--json', '--no-update-check'], { stdout: full });
    expect(result.exitCode).toBe(74);
    expect(result.stderr).toMatch(error('stdout'));
  });
});
