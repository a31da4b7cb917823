import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';
import { TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/** A cache of its own (the debian boxes copied), so that these tests see only their own saved states. */
let cache: string;
/** The saved states: one link per VM shape. */
const states = () => readdirSync(join(cache, 'states')).filter((name) => !name.includes('.'));
const exec = (args: string[], command: string) => runIsolated(['exec', '--box', 'debian', '-v', ...args, '--', 'sh', '-c', command], { env: { BOXBUILD_CACHE_DIR: cache } });
const restored = (stderr: string) => /guest agent ready \(restored\)/.test(stderr);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

beforeAll(() => {
  cache = join(tempDir(), 'cache');
  mkdirSync(join(cache, 'boxes'), { recursive: true });
  cpSync(join(TEST_CACHE, 'boxes/debian'), join(cache, 'boxes/debian'), { recursive: true, verbatimSymlinks: true });
});

describe('warm start', () => {
  test('the first run saves the booted VM; the next restores it, with the host clock and fresh random bytes', async () => {
    const first = await exec([], 'head -c 16 /dev/urandom | od -An -tx1');
    expect(first.exitCode).toBe(0);
    expect(restored(first.stderr)).toBe(false);
    expect(first.stderr).toMatch(/saved the booted VM \([\d.]+ MiB\) for warm starts/);
    expect(states()).toHaveLength(1);
    const runs = [];
    for (let i = 0; i < 2; i++) {
      // The guest's clock lies between the host's before and after the run, give or take 2 s (not at the saved time).
      const hostBefore = Math.floor(Date.now() / 1000);
      const run = await exec([], 'date +%s; head -c 16 /dev/urandom | od -An -tx1');
      const hostAfter = Math.ceil(Date.now() / 1000);
      expect(run.exitCode).toBe(0);
      expect(restored(run.stderr), run.stderr).toBe(true);
      const guestClock = Number(run.stdout.split('\n')[0]);
      expect(guestClock).toBeGreaterThanOrEqual(hostBefore - 2);
      expect(guestClock).toBeLessThanOrEqual(hostAfter + 2);
      runs.push(run);
    }
    const randomOf = (stdout: string) => stdout.split('\n').slice(1).join('');
    expect(randomOf(runs[0]!.stdout)).not.toBe(randomOf(runs[1]!.stdout));
    expect(randomOf(runs[0]!.stdout)).not.toBe(first.stdout);
  });

  test("a restored x86_64 guest keeps time by the ACPI PM timer, whatever its TSC's calibration was: sleep 1 lasts a second", async () => {
    const run = await exec(['--accel', 'tcg'], 'cat /sys/devices/system/clocksource/clocksource0/current_clocksource; time -p sleep 1 2>&1 | head -n 1');
    expect(restored(run.stderr), run.stderr).toBe(true);
    const [clock, real] = run.stdout.split('\n');
    expect(clock).toBe('acpi_pm');
    expect(Number(real!.replace('real ', ''))).toBeLessThan(1.5);
  });

  test('a warm build writes the same artifacts as a cold one, from other host directories behind the same tags', async () => {
    const description = join(tempDir(), 'desc');
    mkdirSync(description);
    writeFileSync(join(description, 'input.txt'), 'b\na\nc\n');
    writeFileSync(join(description, 'build'), '#!/bin/sh\nsort input.txt > "$1/sorted.txt"; md5sum input.txt > "$1/sum.txt"; wc -c < input.txt > "$1/size.txt"\n', { mode: 0o755 });
    const build = async (cold: boolean) => {
      const target = join(tempDir(), 'out');
      const result = await runIsolated(['--box', 'debian', '-v', ...(cold ? ['--cold'] : []), '--', '--description', description, '--target-dir', target], { env: { BOXBUILD_CACHE_DIR: cache } });
      expect(result.exitCode).toBe(0);
      return { target, warm: restored(result.stderr) };
    };
    await build(false); // saves the state of this shape (two shares) if it is not there yet
    const cold = await build(true);
    const warm = await build(false);
    expect([cold.warm, warm.warm]).toEqual([false, true]);
    for (const file of ['sorted.txt', 'sum.txt', 'size.txt']) {
      expect(readFileSync(join(warm.target, file))).toEqual(readFileSync(join(cold.target, file)));
    }
  });

  test('a truncated state never fails a build: it boots cold and saves the state again', async () => {
    const paths = states().map((state) => join(cache, 'states', state, 'vm.state'));
    const sizes = paths.map((path) => statSync(path).size);
    paths.forEach((path, index) => truncateSync(path, Math.floor(sizes[index]! / 3)));
    const result = await exec([], 'echo still-works');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('still-works');
    expect(result.stderr).toContain('the saved VM state could not be restored');
    expect(paths.some((path, index) => statSync(path).size > sizes[index]! / 2)).toBe(true);
    expect(restored((await exec([], 'true')).stderr)).toBe(true);
  });

  test('another memory size is another shape: a cold boot and a second state', async () => {
    const before = states().length;
    const result = await exec(['--box-memory', '768M'], 'true');
    expect(restored(result.stderr)).toBe(false);
    expect(states()).toHaveLength(before + 1);
  });

  test('four warm runs at once: each its own memory (copy-on-write), none writes the saved state, the next sees none of it', async () => {
    const state = join(cache, 'states', states()[0]!);
    const saved = () => ['ram', 'vm.state'].map((file) => sha256(join(state, file)));
    const before = saved();
    // The initramfs root lives in guest RAM: a file written there is a page of the run's own memory.
    const results = await Promise.all([0, 1, 2, 3].map((index) => exec([], `echo run-${index} > /mark; sleep 1; cat /mark`)));
    const stderr = results.map((r) => r.stderr).join('\n');
    expect(results.map((r) => [r.exitCode, r.stdout, restored(r.stderr)]), stderr).toEqual([0, 1, 2, 3].map((i) => [0, `run-${i}`, true]));
    expect(saved()).toEqual(before);
    const next = await exec([], 'cat /mark 2>&1 || true');
    expect([next.stdout, restored(next.stderr)]).toEqual(['cat: can\'t open \'/mark\': No such file or directory', true]);
  });

  test('a state saved by another QEMU build is never restored', async () => {
    // Another file that runs QEMU: another build as far as the shape can tell.
    const bin = join(tempDir(), 'bin');
    mkdirSync(bin);
    const qemu = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64']).toString().trim();
    writeFileSync(join(bin, 'qemu-system-x86_64'), `#!/bin/sh\nexec ${qemu} "$@"\n`, { mode: 0o755 });
    const other = await runIsolated(['exec', '--box', 'debian', '-v', '--', 'true'], { env: { BOXBUILD_CACHE_DIR: cache, PATH: `${bin}:${process.env.PATH}` } });
    expect(other.exitCode).toBe(0);
    expect(restored(other.stderr)).toBe(false);
    expect(other.stderr).toMatch(/saved the booted VM/);
    expect(restored((await exec([], 'true')).stderr)).toBe(true);
  });

  test('--cold boots, saying so under --verbose', async () => {
    const cold = await exec(['--cold'], 'true');
    expect(restored(cold.stderr)).toBe(false);
    expect(cold.stderr).toContain('cold boot: --cold');
  });

  // vhost-user-fs devices cannot be saved: they are plugged in once the guest runs, booted or restored.
  test.each(['x86_64', 'aarch64'])('virtiofs restores too (%s): its shares are plugged in after, read and written', async (arch) => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in'), 'from the host\n');
    const runs = [];
    for (let run = 0; run < 2; run++) {
      const result = await exec(['--arch', arch, '--sharing', 'virtiofs', '--share', `${dir}:/w`], `cat /w/in; echo run${run} >/w/out`);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toBe('from the host');
      expect(readFileSync(join(dir, 'out'), 'utf8')).toBe(`run${run}\n`);
      runs.push(restored(result.stderr));
    }
    // The shape without the virtiofs devices is the one earlier x86_64 runs saved; aarch64 has root ports for them.
    expect(runs).toEqual(arch === 'x86_64' ? [true, true] : [false, true]);
  });

  test('box list shows the saved states; box prune drops replaced ones and keeps the current', async () => {
    const env = { BOXBUILD_CACHE_DIR: cache };
    const listed = JSON.parse((await runCli(['box', 'list', '--json', '--no-update-check'], { env })).stdout) as Array<{ name: string; cached: Array<{ arch: string; warmStates: unknown[] }> }>;
    const debian = listed.find((box) => box.name === 'debian')!.cached.find((variant) => variant.arch === 'x86_64')!;
    expect(debian.warmStates.length).toBeGreaterThanOrEqual(2);
    const replaced = join(cache, 'states', `${readdirSync(join(cache, 'states')).find((name) => name.endsWith('.d'))}`, 'replaced-1');
    mkdirSync(replaced);
    expect((await runCli(['box', 'prune'], { env })).exitCode).toBe(0);
    expect(existsSync(replaced)).toBe(false);
    expect(restored((await exec([], 'true')).stderr)).toBe(true);
  });

  test('aarch64 restores too', async () => {
    cpSync(join(TEST_CACHE, 'boxes/debian'), join(cache, 'boxes/debian'), { recursive: true, verbatimSymlinks: true });
    const first = await exec(['--arch', 'aarch64'], 'uname -m');
    const second = await exec(['--arch', 'aarch64'], 'uname -m');
    expect([first.stdout, second.stdout]).toEqual(['aarch64', 'aarch64']);
    expect([restored(first.stderr), restored(second.stderr)]).toEqual([false, true]);
  });
});
