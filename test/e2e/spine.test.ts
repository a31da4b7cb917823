import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { expectNoLeftovers, runIsolated, startIsolated, untilOutput, untilProcesses } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/** A description directory whose `build` is the given shell script. */
function description(script: string, files: Record<string, string> = {}): string {
  const dir = join(tempDir(), 'desc');
  mkdirSync(dir);
  writeFileSync(join(dir, 'build'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'build'), 0o755);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const build = (desc: string, target: string, ...rest: string[]) =>
  runIsolated(['--box', 'debian', '--accel', 'tcg', '-q', '--', '--description', desc, '--target-dir', target, ...rest]);

describe('boxbuild --box debian -- --description D --target-dir T', () => {
  test('the bundled example builds its artifact into the target directory', async () => {
    const target = join(tempDir(), 'out');
    const result = await build(join(REPO, 'examples/hello'), target, 'one', 'two');
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('hello: building in x86_64 guest');
    expect(result.stdout).toContain('hello: extra arguments: one two');
    expect(existsSync(join(target, 'hello.tar.gz'))).toBe(true);
    expect(readFileSync(join(target, 'hello/message.txt'), 'utf8')).toBe('Hello from a throwaway VM.\n');
    expect(statSync(join(target, 'hello.tar.gz')).uid).toBe(process.getuid!());
    const provenance = JSON.parse(readFileSync(join(target, 'boxbuild-provenance.json'), 'utf8'));
    expect(provenance).toMatchObject({ box: 'debian', arch: 'x86_64', accelerator: 'tcg', sharing: '9p' });
    expect(provenance.files.kernel.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test("the build's exit status is boxbuild's, and its stdout and stderr stay apart; provenance and --result record the run", async () => {
    const desc = description('echo to-stdout; echo to-stderr >&2; exit 7');
    const target = join(tempDir(), 'out');
    const resultFile = join(tempDir(), 'result.json');
    const before = Date.now();
    const result = await build(desc, target, '--result-is-a-build-arg');
    expect(result.exitCode).toBe(7);
    expect(result.stdout).toBe('to-stdout');
    expect(result.stderr).toBe('to-stderr');
    const provenance = JSON.parse(readFileSync(join(target, 'boxbuild-provenance.json'), 'utf8'));
    expect(provenance).toMatchObject({ argv: ['/usr/lib/boxbuild/build', '--description', '/description', '--target-dir', '/target', '--result-is-a-build-arg'], exitCode: 7 });
    expect(Date.parse(provenance.startedAt)).toBeGreaterThanOrEqual(before);
    expect(provenance.durationSeconds).toBeCloseTo((Date.parse(provenance.endedAt) - Date.parse(provenance.startedAt)) / 1000, 2);
    const recorded = await runIsolated(['--box', 'debian', '--accel', 'tcg', '-q', '--result', resultFile, '--', '--description', desc, '--target-dir', target]);
    expect(recorded.exitCode).toBe(7);
    expect(JSON.parse(readFileSync(resultFile, 'utf8'))).toMatchObject({ exitCode: 7, box: 'debian', arch: 'x86_64', accelerator: 'tcg', sharing: '9p', warm: expect.any(Boolean), durationSeconds: expect.any(Number) });
    // Both runs' output is kept in the logs of past builds (found by this test's own description path).
    const logs = readdirSync(join(TEST_CACHE, 'logs')).map((name) => readFileSync(join(TEST_CACHE, 'logs', name), 'utf8')).filter((text) => text.includes(desc));
    expect(logs).toHaveLength(2);
    for (const log of logs) expect(log).toMatch(/\nto-std(out|err)\nto-std(out|err)\n\n# exit status 7 at /);
  });

  test('build arguments arrive byte-exact, never parsed by a shell', async () => {
    const args = [
      'two words',
      'double " and single \' quotes',
      '$(touch /target/pwned) `touch /target/pwned2` ${HOME}',
      'new\nline',
      'trailing newlines\n\n',
      '  leading and trailing spaces  ',
      'tab\there',
      '',
      '-n',
      '*',
      'back\\slash',
      'ünïcödé 日本語 🚀',
      '--description-like=value',
    ];
    const desc = description('target=$1; shift; printf "%s\\0" "$@" > "$target/args.bin"');
    const target = join(tempDir(), 'out');
    const result = await build(desc, target, ...args);
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    const received = readFileSync(join(target, 'args.bin'), 'utf8').split('\0').slice(0, -1);
    expect(received).toEqual(args);
    expect(existsSync(join(target, 'pwned'))).toBe(false);
    expect(existsSync(join(target, 'pwned2'))).toBe(false);
  });

  test('the description is read-only in the guest; the target directory is writable', async () => {
    const desc = description(
      [
        'touch "$PWD/new-file" 2>/dev/null && echo created-new',
        'echo changed 2>/dev/null > "$PWD/existing" && echo changed-existing',
        'rm -f "$PWD/existing" 2>/dev/null && echo removed',
        'echo ok > "$1/written" && echo wrote-target',
      ].join('\n'),
      { existing: 'original\n' },
    );
    const target = join(tempDir(), 'out');
    const result = await build(desc, target);
    expect(result.stdout).toBe('wrote-target');
    expect(existsSync(join(desc, 'new-file'))).toBe(false);
    expect(readFileSync(join(desc, 'existing'), 'utf8')).toBe('original\n');
    expect(readFileSync(join(target, 'written'), 'utf8')).toBe('ok\n');
  });
});

describe('boxbuild exec', () => {
  test('runs a command with shares, in the guest path of the current directory', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in.txt'), 'input\n');
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--share', `${dir}:/work`, '--', 'sh', '-c', 'pwd; cat in.txt; echo out > out.txt; exit 3'], { cwd: dir });
    expect(result.exitCode).toBe(3);
    expect(result.stdout).toBe('/work\ninput');
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('out\n');
  });

  test('output streams live, while the command still runs', async () => {
    // The command prints "first", then waits for the test to create the file "go".
    const dir = tempDir();
    const script = 'echo first; until [ -e /s/go ]; do sleep 0.1; done; echo second';
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--share', `${dir}:/s`, '--', 'sh', '-c', script]);
    let exited = false;
    void child.then(() => (exited = true));
    await untilOutput(child, 'first');
    expect(exited).toBe(false);
    writeFileSync(join(dir, 'go'), '');
    const result = await child;
    expect(result.stdout).toBe('first\nsecond');
    expectNoLeftovers(tmp);
  });

  test('a guest that dies mid-build is an error, never a success', async () => {
    const poweroff = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'poweroff', '-f']);
    expect(poweroff.exitCode).toBe(76);
    expect(poweroff.stderr).toMatch(/^boxbuild: error: the guest stopped without reporting the build's exit status/m);
    const panic = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger']);
    expect(panic.exitCode).toBe(76);
    expect(panic.stderr).toContain('Kernel panic');
  });

  test('--box-debug shows the kernel and the agent on stderr; the command\'s own output stays apart', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--box-debug', '--', 'sh', '-c', 'cat /proc/cmdline; echo to-stderr >&2']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/boxbuild\.debug$/);
    expect(result.stdout.split(' ')).not.toContain('quiet');
    expect(result.stderr).toMatch(/Linux version \d/);
    expect(result.stderr).toMatch(/^\+ /m); // the agent's trace
    expect(result.stderr).toContain('to-stderr'); // the console's lines and the command's interleave on stderr
  });

  test('a command that does not exist gives 127', async () => {
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'no-such-command']);
    expect(result.exitCode).toBe(127);
    expect(result.stderr).toContain('no-such-command');
  });
});

describe('limits and failures', () => {
  test('--timeout kills the VM and says so; --result records the error', async () => {
    const resultFile = join(tempDir(), 'result.json');
    const result = await runIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--timeout', '5s', '--result', resultFile, '--', 'sleep', '600']);
    expect(result.exitCode).toBe(124);
    expect(result.stderr).toMatch(/^boxbuild: error: the run did not finish within --timeout 5 s \(it was running the command\); the VM was stopped$/m);
    expect(JSON.parse(readFileSync(resultFile, 'utf8'))).toMatchObject({ exitCode: 124, error: { kind: 'timeout', message: expect.stringContaining('--timeout 5 s') }, argv: expect.arrayContaining(['sleep', '600']) });
  });

  test('SIGINT mid-build stops the VM and leaves nothing behind', async () => {
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--', 'sh', '-c', 'echo started; sleep 600']);
    await untilOutput(child, 'started');
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(130);
    expect(String(result.stderr)).toContain('interrupted');
    expectNoLeftovers(tmp);
  });

  test('SIGTERM while booting stops the VM and leaves nothing behind', async () => {
    const { tmp, child } = startIsolated(['exec', '--box', 'debian', '--accel', 'tcg', '-q', '--cold', '--', 'true']);
    await untilProcesses(tmp, (running) => expect(running.join('\n')).toMatch(/qemu-system-x86_64/));
    child.kill('SIGTERM');
    const result = await child;
    expect(result.exitCode).toBe(143);
    expectNoLeftovers(tmp);
  });
});

describe('broken boxes', () => {
  /** A registry with the debian box's files under another name and another kernel command line. */
  function brokenBox(name: string, cmdline: string): string[] {
    const cache = join(tempDir(), 'cache');
    cpSync(join(TEST_CACHE, 'boxes/debian'), join(cache, 'boxes', name), { recursive: true, verbatimSymlinks: true });
    const registry = join(cache, 'boxes.json');
    const entry = { description: 'broken', make: 'debian', buildProgram: '/usr/lib/boxbuild/build', cmdline, arches: { x86_64: {} } };
    writeFileSync(registry, JSON.stringify({ boxes: { [name]: entry } }));
    return ['--boxes', registry, '--box', name];
  }

  test('a kernel that panics gives a clear error with the last console lines', async () => {
    const args = brokenBox('panics', 'rdinit=/no/such/init');
    const result = await runIsolated(['exec', ...args, '--accel', 'tcg', '-q', '--', 'true'], {
      env: { BOXBUILD_CACHE_DIR: join(args[1]!, '..') },
    });
    expect(result.exitCode).toBe(71);
    expect(result.stderr).toMatch(/^boxbuild: error: the VM stopped before the guest agent was ready/m);
    expect(result.stderr).toContain('Kernel panic');
  });

  test('a guest that never starts is killed after --boot-timeout', async () => {
    const args = brokenBox('hangs', 'quiet rdinit=/bin/sh');
    const result = await runIsolated(['exec', ...args, '--accel', 'tcg', '-q', '--boot-timeout', '6', '--', 'true'], {
      env: { BOXBUILD_CACHE_DIR: join(args[1]!, '..') },
    });
    expect(result.exitCode).toBe(71);
    expect(result.stderr).toContain('the guest showed no sign of life within --boot-timeout 6 s');
  });
});
