import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { buildArgv, runBuildWith, statusOf } from '../../../src/matrix/build.js';
import type { MatrixBuild } from '../../../src/matrix/types.js';
import { tempDir } from '../../helpers/temp.js';

/*
 * runBuild against a stand-in for boxbuild's CLI: it takes the same command line, prints, writes
 * the --result file and an artifact, and ends as the environment says (one exit status per attempt).
 */
const FAKE = `
const { appendFileSync, readFileSync, writeFileSync, mkdirSync } = require('node:fs');
const argv = process.argv.slice(2);
const at = (option) => argv[argv.indexOf(option) + 1];
const counter = process.env.FAKE_COUNTER;
const attempt = Number(readFileSync(counter, 'utf8') || 0);
appendFileSync(counter, '');
writeFileSync(counter, String(attempt + 1));
const [code, kind] = (process.env.FAKE_ENDS.split(',')[attempt] ?? '0').split(':');
const target = at('--target-dir');
mkdirSync(target + '/sub', { recursive: true });
writeFileSync(target + '/sub/out.txt', 'artifact ' + attempt);
for (let i = 1; i <= Number(process.env.FAKE_LINES ?? 3); i++) console.log('attempt ' + attempt + ' line ' + i);
if (process.env.FAKE_LONG) process.stdout.write('x'.repeat(100000) + '\\n');
const result = (error) => writeFileSync(at('--result'), JSON.stringify({ exitCode: Number(code), ...(error ? { error } : {}), box: 'debian', version: '7', accelerator: 'tcg' }));
if (code === 'hang') {
  process.on('SIGTERM', () => { console.error('boxbuild: error: terminated'); result({ kind: 'terminated', message: 'terminated' }); process.exit(143); });
  console.log('waiting');
  setInterval(() => {}, 1000);
} else {
  if (kind) console.error('boxbuild: error: ' + kind + ' happened');
  if (kind !== 'nofile') result(kind ? { kind, message: kind + ' happened' } : undefined);
  process.exit(Number(code));
}
`;

function setup(ends: string, env: Record<string, string> = {}) {
  const dir = tempDir();
  const cli = join(dir, 'fake-cli.cjs');
  writeFileSync(cli, FAKE);
  const counter = join(dir, 'counter');
  writeFileSync(counter, '');
  return { cli, dir: join(dir, 'build'), env: { FAKE_COUNTER: counter, FAKE_ENDS: ends, ...env } };
}

const build = (retries = 0, extra: Partial<MatrixBuild> = {}): MatrixBuild => ({
  id: 'abc123',
  name: 'debian x86_64 examples/hello',
  label: 'examples/hello',
  box: 'debian',
  arch: 'x86_64',
  description: '/src/examples/hello',
  args: ['--type', 'a b'],
  retries,
  tags: ['nightly'],
  ...extra,
});

describe('statusOf', () => {
  test.each([
    [0, false, undefined, 'passed'],
    [0, true, undefined, 'passed'],
    [1, true, undefined, 'cancelled'],
    [undefined, true, undefined, 'cancelled'],
    [124, false, undefined, 'timeout'],
    [130, false, undefined, 'cancelled'],
    [143, false, undefined, 'cancelled'],
    [2, false, undefined, 'error'],
    [69, false, undefined, 'error'],
    [70, false, undefined, 'error'],
    [71, false, undefined, 'error'],
    [74, false, undefined, 'error'],
    [76, false, undefined, 'error'],
    [undefined, false, undefined, 'error'],
    [1, false, undefined, 'failed'],
    [3, false, undefined, 'failed'],
    // The --result file tells the build's own status from boxbuild's failures.
    [2, false, { exitCode: 2 }, 'failed'],
    [124, false, { exitCode: 124 }, 'failed'],
    [124, false, { exitCode: 124, error: { kind: 'timeout' } }, 'timeout'],
    [71, false, { exitCode: 71, error: { kind: 'vmFailed' } }, 'error'],
    [130, false, { exitCode: 130, error: { kind: 'interrupted' } }, 'cancelled'],
  ] as const)('exit %s, aborted %s, result %j: %s', (code, aborted, result, status) => {
    expect(statusOf(code, aborted, result)).toBe(status);
  });
});

describe('runBuild', () => {
  test("boxbuild's command line: options, then the build's own arguments after --, unexpanded", () => {
    const argv = buildArgv(build(0, { timeoutSeconds: 90, registryFiles: ['/r/boxes.json'] }), '/res/builds/abc123');
    expect(argv).toEqual([
      '--box', 'debian', '--arch', 'x86_64', '--boxes', '/r/boxes.json', '--timeout', '90s', '--result', '/res/builds/abc123/result.json', '-q',
      '--', '--description', '/src/examples/hello', '--target-dir', '/res/builds/abc123/target', '--type', 'a b',
    ]);
    expect(buildArgv(build(0, { target: '/out/x' }), '/d')).toContain('/out/x');
  });

  test('a passing build: its log, the tail, the provenance, the artifacts with their sha256', async () => {
    const { cli, dir, env } = setup('0', { FAKE_LINES: '40' });
    const lines: string[] = [];
    const result = await runBuildWith(cli, build(), { dir, env, onLine: (line) => lines.push(line) });
    expect(result).toMatchObject({ id: 'abc123', status: 'passed', exitCode: 0, attempts: 1, ranOn: 'local', log: join(dir, 'log.txt'), provenance: { box: 'debian', version: '7', boxbuild: expect.any(String) } });
    expect(result.error).toBeUndefined();
    expect(lines).toHaveLength(40);
    expect(readFileSync(result.log, 'utf8').split('\n')).toHaveLength(41);
    expect(result.logTail).toEqual(lines.slice(-30));
    expect(result.artifacts).toEqual([{ path: 'sub/out.txt', size: 10, sha256: createHash('sha256').update('artifact 0').digest('hex') }]);
  });

  test('a failed build is tried again: the last log is log.txt, earlier ones log.1.txt, …; a fresh target each time', async () => {
    const { cli, dir, env } = setup('3,4,0');
    const result = await runBuildWith(cli, build(2), { dir, env });
    expect(result).toMatchObject({ status: 'passed', attempts: 3 });
    expect(readdirSync(dir).sort()).toEqual(['log.1.txt', 'log.2.txt', 'log.txt', 'result.json', 'target']);
    expect(readFileSync(join(dir, 'log.1.txt'), 'utf8')).toContain('attempt 0 line 1');
    expect(readFileSync(join(dir, 'log.2.txt'), 'utf8')).toContain('attempt 1 line 1');
    expect(readFileSync(join(dir, 'log.txt'), 'utf8')).toContain('attempt 2 line 1');
    expect(result.artifacts.map((a) => a.size)).toEqual(['artifact 2'.length]);
  });

  test('retries run out: the last failure stands; a later run of the build starts from a clean directory', async () => {
    const first = setup('3,5');
    expect(await runBuildWith(first.cli, build(1), first)).toMatchObject({ status: 'failed', exitCode: 5, attempts: 2 });
    writeFileSync(first.env.FAKE_COUNTER, '');
    expect(await runBuildWith(first.cli, build(0), { ...first, env: { ...first.env, FAKE_ENDS: '0' } })).toMatchObject({ status: 'passed', attempts: 1 });
    expect(readdirSync(first.dir).sort()).toEqual(['log.txt', 'result.json', 'target']);
  });

  test("boxbuild's own failure is an error with its line; a timeout is not retried as a pass would be", async () => {
    const own = setup('71:vmFailed');
    expect(await runBuildWith(own.cli, build(), own)).toMatchObject({ status: 'error', exitCode: 71, error: 'boxbuild: error: vmFailed happened' });
    const noFile = setup('71:nofile');
    const unrecorded = await runBuildWith(noFile.cli, build(), noFile);
    expect(unrecorded).toMatchObject({ status: 'error', error: 'boxbuild: error: nofile happened' });
    expect(unrecorded.provenance).toBeUndefined();
    const timeout = setup('124:timeout,0');
    expect(await runBuildWith(timeout.cli, build(1), timeout)).toMatchObject({ status: 'passed', attempts: 2 });
  });

  test('an aborted signal stops boxbuild with SIGTERM: cancelled, not retried; one aborted before never starts', async () => {
    const { cli, dir, env } = setup('hang,0');
    const controller = new AbortController();
    const running = runBuildWith(cli, build(3), { dir, env, signal: controller.signal, onLine: (line) => line === 'waiting' && controller.abort() });
    expect(await running).toMatchObject({ status: 'cancelled', exitCode: 143, attempts: 1, error: 'boxbuild: error: terminated' });
    const never = await runBuildWith(cli, build(), { dir: join(dir, 'never'), env, signal: controller.signal });
    expect(never).toMatchObject({ status: 'cancelled', attempts: 0, log: '' });
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  test('a line without end is cut for the tail (the log keeps it whole); links in the target are not artifacts', async () => {
    const { cli, dir, env } = setup('0', { FAKE_LONG: '1', FAKE_LINES: '0' });
    const target = join(tempDir(), 'named-target');
    mkdirSync(target);
    symlinkSync('/etc/passwd', join(target, 'link'));
    const result = await runBuildWith(cli, build(0, { target }), { dir, env });
    expect(result.logTail).toEqual(['x'.repeat(4096)]);
    expect(readFileSync(result.log, 'utf8')).toHaveLength(100_001);
    expect(result.artifacts.map((a) => a.path)).toEqual(['sub/out.txt']);
    expect(existsSync(join(dir, 'target'))).toBe(false);
  });
});
