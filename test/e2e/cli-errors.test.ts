import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/** Bad input: one clear line on stderr, exit status 2, no VM started, nothing created. */
async function expectUsageError(args: string[], message: string | RegExp): Promise<void> {
  const result = await runCli(args);
  expect(result.exitCode).toBe(2);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(message);
  expect(result.stderr).not.toMatch(/\bat .*\.js:\d+/);
}

describe('bad input', () => {
  const example = join(REPO, 'examples/hello');
  const dir = tempDir();

  test('no "--"', () => expectUsageError(['--box', 'debian'], 'missing "--"'));
  test('a misspelt command gets a suggestion', () => expectUsageError(['exc', '--box', 'debian', '--', 'true'], 'unknown command "exc" (did you mean "exec"?)'));
  test('no arguments at all: the usage, exit 2', async () => {
    const result = await runCli([]);
    expect([result.exitCode, result.stdout]).toEqual([2, '']);
    expect(result.stderr).toMatch(/^Usage: boxbuild \[options\] \[command\]/);
  });
  test('help exec: the usage of exec, exit 0', async () => {
    const result = await runCli(['help', 'exec']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^Usage: boxbuild exec /);
  });
  test('--box-memory beyond the host\'s memory: refused at once, no VM waited for', () =>
    expectUsageError(['exec', '--box', 'debian', '--box-memory', `${Math.ceil(totalmem() / 2 ** 30) + 1}G`, '--', 'true'], /^boxbuild: error: --box-memory \d+G is more than this host's memory \(\d+\.\d GiB\)$/));
  test('no --box', () => expectUsageError(['--', '--description', example, '--target-dir', dir], 'missing --box'));
  test('unknown box', () => expectUsageError(['--box', 'nope', '--', '--description', example, '--target-dir', dir], 'unknown box "nope"'));
  test('--no-cache for a box that is not a KIWI box', () =>
    expectUsageError(['--box', 'debian', '--no-cache', '--', '--description', example, '--target-dir', dir], '--no-cache: only for KIWI boxes; box "debian" is not one'));
  test('exec --image: a missing file; with --box; with --no-snapshot', () =>
    Promise.all([
      expectUsageError(['exec', '--image', join(dir, 'missing.qcow2'), '--', 'true'], /missing\.qcow2: no such file or directory/),
      expectUsageError(['exec', '--image', join(example, 'build'), '--box', 'debian', '--', 'true'], '--image and --box: give one of them'),
      expectUsageError(['exec', '--image', join(example, 'build'), '--no-snapshot', '--', 'true'], '--no-snapshot cannot go with it'),
    ]));
  test('missing --description', () => expectUsageError(['--box', 'debian', '--', '--target-dir', dir], 'missing --description'));
  test('missing --target-dir', () => expectUsageError(['--box', 'debian', '--', '--description', example], 'missing --target-dir'));
  test('nonexistent description', () =>
    expectUsageError(['--box', 'debian', '--', '--description', join(dir, 'nope'), '--target-dir', dir], /--description .*nope does not exist/));
  test('description that is a file', () => {
    writeFileSync(join(dir, 'file'), '');
    return expectUsageError(['--box', 'debian', '--', '--description', join(dir, 'file'), '--target-dir', join(dir, 'o')], 'is not a directory');
  });
  test('target inside the description', async () => {
    const desc = join(dir, 'desc');
    mkdirSync(desc);
    await expectUsageError(['--box', 'debian', '--', '--description', desc, '--target-dir', join(desc, 'out')], 'lies inside the description');
  });
  test('a target directory that cannot be made (/proc refuses it): exit 2 at once', async () => {
    // Node's recursive mkdir spun for ever there, deaf to SIGTERM: the timeout ends it with SIGKILL.
    const result = await runCli(['--box', 'debian', '--', '--description', example, '--target-dir', '/proc/nope/deeper'], { timeout: 10_000, forceKillAfterDelay: 1000 });
    expect([result.exitCode, result.stderr]).toEqual([2, 'boxbuild: error: cannot create --target-dir /proc/nope/deeper: ENOENT']);
  });
  test('description inside the target', () =>
    expectUsageError(['--box', 'debian', '--', '--description', example, '--target-dir', REPO], 'lies inside the target directory'));
  test('unknown option', () => expectUsageError(['--box', 'debian', '--frobnicate', '--', 'x'], "unknown option '--frobnicate'"));
  test('an unknown option still writes the --result file; a --result that cannot be written is refused before the run', async () => {
    const result = join(dir, 'unknown.json');
    await expectUsageError(['exec', '--box', 'debian', '--frobnicate', '--result', result, '--', 'true'], "unknown option '--frobnicate'");
    expect(JSON.parse(readFileSync(result, 'utf8'))).toMatchObject({ exitCode: 2, error: { kind: 'usage', message: "unknown option '--frobnicate'" } });
    await expectUsageError(['exec', '--box', 'debian', '--result', dir, '--', 'true'], /^boxbuild: error: --result .*: a directory is in its place$/m);
  });
  test('bad memory size', () => expectUsageError(['exec', '--box', 'debian', '--box-memory', 'lots', '--', 'true'], 'not a size'));
  test('bad accelerator', () => expectUsageError(['exec', '--box', 'debian', '--accel', 'xen', '--', 'true'], 'xen'));
  test('exec without a command', () => expectUsageError(['exec', '--box', 'debian', '--'], 'missing command'));
  test('a registry with a typo names the file, box and field', async () => {
    const registry = join(dir, 'typo.json');
    writeFileSync(registry, JSON.stringify({ boxes: { mine: { make: 'debian', buildProgram: '/b', cpus: 'four', arches: { x86_64: {} } } } }));
    await expectUsageError(['exec', '--boxes', registry, '--box', 'mine', '--', 'true'], `${registry}: box "mine": field "cpus" must be a positive whole number`);
  });
});
