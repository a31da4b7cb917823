import { beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { fetchTestBox } from '../helpers/boxes.js';
import { bootableImage } from '../helpers/images.js';
import { tempDir } from '../helpers/temp.js';

/*
 * exec --image runs two VMs: one of the debian box that finds the image's kernel and root, then the
 * image's own. The user's stdin, terminal and --timeout belong to the run as a whole: the command
 * in the image reads the stdin, and --timeout bounds both VMs together.
 */
describe('exec --image: one run, two VMs', () => {
  let image: string;
  beforeAll(async () => {
    await fetchTestBox('debian', 'aarch64');
    image = await bootableImage(tempDir(), 'plain');
  });

  test("the piped stdin reaches the image's command, not the VM that prepares the image", { timeout: 240_000 }, async () => {
    const result = await runIsolated(['exec', '--image', image, '-q', '--', 'cat'], { input: 'through the pipe\n', stdin: 'pipe' });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('through the pipe');
  });

  test('--timeout bounds both VMs together', { timeout: 240_000 }, async () => {
    const timeout = 40; // the preparing VM takes about 10 s here, 20 s under load: the timeout must land in the second VM
    const began = Date.now();
    const result = await runIsolated(['exec', '--image', image, '-v', '--timeout', `${timeout}s`, '--', 'sleep', '600']);
    const elapsed = (Date.now() - began) / 1000;
    expect(result.exitCode, result.stderr).toBe(124);
    expect(result.stderr).toMatch(/the run did not finish within --timeout 40 s \(it was running the command\); the VM was stopped/);
    // The image's QEMU started this long after boxbuild (the preparing VM's time): it counts towards the timeout.
    const starts = [...result.stderr.matchAll(/timing: QEMU started ([\d.]+) s after boxbuild started/g)].map((match) => Number(match[1]));
    expect(starts).toHaveLength(2);
    expect(elapsed).toBeLessThan(timeout + starts[1]! / 2);
  });
});
