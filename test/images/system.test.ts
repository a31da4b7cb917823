import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput, untilProcesses } from '../helpers/box-cli.js';
import { TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';
import { onTerminal } from '../helpers/terminal.js';
import { baseDisk, describeSystemBox, sha256 } from '../helpers/system-box.js';

describeSystemBox('x86_64'); // aarch64: system-aarch64.test.ts

describe('system disk snapshots', () => {
  test('the cached disk keeps its sha256 when boxbuild is killed with SIGKILL mid-run', async () => {
    const before = await sha256(baseDisk('x86_64'));
    const { tmp, child } = startIsolated(['exec', '--box', 'debian-system', '-q', '--', 'sh', '-c', 'dd if=/dev/zero of=/root/junk bs=1M count=64; sync; echo written; sleep 600']);
    await untilOutput(child, 'written');
    child.kill('SIGKILL');
    await child;
    // SIGKILL gives boxbuild no chance to clean up: QEMU dies with it (parent-death signal); only the run directory stays.
    await untilProcesses(tmp, (running) => expect(running).toEqual([]));
    expect(await sha256(baseDisk('x86_64'))).toBe(before);
  });

  test('--no-snapshot writes to the box (changes persist) and two such runs cannot share one disk', async () => {
    const cache = join(tempDir(), 'cache');
    cpSync(join(TEST_CACHE, 'boxes/debian-system/x86_64'), join(cache, 'boxes/debian-system/x86_64'), { recursive: true, verbatimSymlinks: true });
    const env = { BOXBUILD_CACHE_DIR: cache };
    const exec = (...args: string[]) => runIsolated(['exec', '--box', 'debian-system', '-q', ...args], { env });
    expect((await exec('--no-snapshot', '--', 'sh', '-c', 'echo kept > /var/cache/marker')).exitCode).toBe(0);
    expect((await exec('--', 'sh', '-c', 'cat /var/cache/marker; echo lost > /var/cache/other')).stdout).toBe('kept');
    expect((await exec('--no-snapshot', '--', 'sh', '-c', 'cat /var/cache/marker; ls /var/cache/other 2>&1 || true')).stdout).toMatch(/^kept\n.*No such file/);

    const { tmp, child } = startIsolated(['exec', '--box', 'debian-system', '-q', '--no-snapshot', '--', 'sh', '-c', 'echo started; sleep 600'], { env });
    await untilOutput(child, 'started');
    const second = await exec('--no-snapshot', '--', 'true');
    expect(second.exitCode).toBe(71);
    expect(second.stderr).toMatch(/is in use by another --no-snapshot run \(pid \d+\)/);
    child.kill('SIGTERM');
    expect((await child).exitCode).toBe(143);
    expectNoLeftovers(tmp);
    writeFileSync(join(cache, 'done'), '');
  });
});

describe('SSH channel (debian-system, x86_64)', () => {
  const args = ['one two', '$(touch /tmp/pwned) `id`', 'new\nline', '', 'ünïcödé 🚀', '"quoted" \'single\''];

  test('argv byte-exact, exit status, stdout and stderr apart; the run never touches ~/.ssh', async () => {
    const home = tempDir();
    const script = 'printf "%s\\0" "$@" >&2; echo to-stdout; [ ! -e /tmp/pwned ] || echo PWNED; exit 9';
    const result = await runIsolated(['exec', '--box', 'debian-system', '-q', '--channel', 'ssh', '--', 'sh', '-c', script, 'sh', ...args], { env: { HOME: home } });
    expect(result.exitCode).toBe(9);
    expect(result.stdout).toBe('to-stdout');
    expect(result.stderr.split('\0').slice(0, -1)).toEqual(args);
    expect(existsSync(join(home, '.ssh'))).toBe(false);
  });

  test("stdin travels after the request on the session's stdin: byte-exact, its end passed on", async () => {
    const data = randomBytes(4 * 1024 * 1024);
    const result = await runIsolated(['exec', '--box', 'debian-system', '-q', '--channel', 'ssh', '--', 'sh', '-c', 'sha256sum | cut -d" " -f1'], { input: data, stdin: 'pipe' });
    expect([result.exitCode, result.stdout]).toEqual([0, createHash('sha256').update(data).digest('hex')]);
  });

  test('two SSH-channel builds at once, each with its own port and keys', async () => {
    const runs = await Promise.all(
      [0, 1].map((index) => runIsolated(['exec', '--box', 'debian-system', '-q', '--channel', 'ssh', '--', 'sh', '-c', `echo run-${index}`])),
    );
    expect(runs.map((run) => [run.exitCode, run.stdout])).toEqual([
      [0, 'run-0'],
      [0, 'run-1'],
    ]);
  });

  test('a run over SSH restores the saved VM too, with its own forwarded port', async () => {
    const run = () => runIsolated(['exec', '--box', 'debian-system', '-v', '--channel', 'ssh', '--', 'sh', '-c', 'echo over-ssh']);
    await run(); // saves the state of this shape if there is none yet
    const warm = await run();
    expect([warm.exitCode, warm.stdout]).toEqual([0, 'over-ssh']);
    expect(warm.stderr).toContain('guest agent ready (restored)');
  });

  test('-t over SSH: the session runs the command on the guest terminal; --debug-shell opens the shell in the command\'s directory', async () => {
    const share = tempDir();
    const run = onTerminal(['exec', '--box', 'debian-system', '-q', '--channel', 'ssh', '-t', '--debug-shell', '--share', `${share}:/work`, '--', 'sh', '-c', 'test -t 0 && stty size; echo made >file; exit 3'], `cd ${share};`);
    await run.until('a shell in its VM');
    run.type('echo "shell in $(pwd) with $(cat file) on $(tty)"; exit\r');
      const result = await run.child;
    expectNoLeftovers(run.tmp);
    expect(result.exitCode).toBe(3);
    expect(run.shown()).toContain('33 77\n');
    expect(run.shown()).toMatch(/shell in \/work with made on \/dev\/pts\/\d+/);
    expect(run.shown()).toContain('MODE-KEPT');
  });

  test('a box without sshd says so', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '-q', '--channel', 'ssh', '--', 'true']);
    expect(result.exitCode).toBe(71);
    expect(result.stderr).toContain('this box has no SSH server: use --channel serial');
  });
});

describe('warm start of a system box (x86_64)', () => {
  test('restored on a fresh overlay of the saved disk: files written by earlier runs are gone, the base disk is untouched', async () => {
    const cache = join(tempDir(), 'cache');
    cpSync(join(TEST_CACHE, 'boxes/debian-system/x86_64'), join(cache, 'boxes/debian-system/x86_64'), { recursive: true, verbatimSymlinks: true });
    const before = await sha256(baseDisk('x86_64', cache));
    const run = (command: string) => runIsolated(['exec', '--box', 'debian-system', '-v', '--', 'sh', '-c', command], { env: { BOXBUILD_CACHE_DIR: cache } });
    const cold = await run('echo one > /root/left-behind; gcc --version | head -1');
    expect(cold.exitCode).toBe(0);
    expect(cold.stderr).toMatch(/saved the booted VM/);
    for (let i = 0; i < 2; i++) {
      const warm = await run('ls /root/left-behind 2>&1 || true; echo two > /root/left-behind; gcc --version | head -1');
      expect(warm.exitCode).toBe(0);
      expect(warm.stderr).toContain('guest agent ready (restored)');
      expect(warm.stdout).toMatch(/No such file[\s\S]*gcc \(Debian/);
    }
    expect(await sha256(baseDisk('x86_64', cache))).toBe(before);
  });
});
