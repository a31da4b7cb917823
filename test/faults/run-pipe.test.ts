import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, startIsolated, untilOutput } from '../helpers/box-cli.js';

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
