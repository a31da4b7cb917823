import { cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * The package as users get it: packed from the sources alone (prepack builds it), installed into a
 * fresh project, and used through its public API with a real VM.
 */

let app: string;
let tarball: string;

beforeAll(async () => {
  // The sources as a fresh clone has them: no dist (the repository's node_modules lends the compiler).
  const source = join(tempDir(), 'source');
  mkdirSync(source);
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'boxes.json', 'README.md', 'LICENSE']) cpSync(join(REPO, entry), join(source, entry), { recursive: true });
  symlinkSync(join(REPO, 'node_modules'), join(source, 'node_modules'));
  const packs = tempDir();
  await execa('npm', ['pack', '--pack-destination', packs], { cwd: source });
  tarball = join(packs, readdirSync(packs).find((name) => name.endsWith('.tgz'))!);
  app = join(tempDir(), 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  await execa('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: app });
}, 600_000);

describe('the packed package', () => {
  test('holds the program, its guest files and a LICENSE; no benchmarks, no source maps', async () => {
    const { stdout } = await execa('tar', ['-tzf', tarball]);
    const files = stdout.split('\n');
    expect(files).toEqual(expect.arrayContaining(['package/LICENSE', 'package/dist/cli.js', 'package/dist/index.js', 'package/dist/index.d.ts', 'package/src/guest/files/agent', 'package/boxes.json']));
    expect(files.filter((file) => file.includes('/bench/') || file.endsWith('.map'))).toEqual([]);
  });

  test("import { run } from 'boxbuild': status, output and stdin of a real run; internals are not importable", async () => {
    writeFileSync(
      join(app, 'use.mjs'),
      `import { run } from 'boxbuild';
const result = await run({ box: 'debian', argv: ['sh', '-c', 'cat; echo to-stderr >&2; exit 3'], input: 'from stdin\\n', accel: 'tcg', cacheDir: process.env.CACHE });
let internals = 'importable';
await import('boxbuild/dist/runner/agent.js').catch((error) => (internals = error.code));
console.log(JSON.stringify({ result, internals }));
`,
    );
    const tmp = tempDir();
    const { stdout } = await execa('node', ['use.mjs'], { cwd: app, env: { CACHE: TEST_CACHE, TMPDIR: tmp } });
    expect(JSON.parse(stdout)).toEqual({ result: { exitCode: 3, stdout: 'from stdin', stderr: 'to-stderr' }, internals: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
    expectNoLeftovers(tmp);
  });

  test('an AbortSignal stops the VM: a BoxbuildError of kind "interrupted", with the reason as its cause', async () => {
    writeFileSync(
      join(app, 'abort.mjs'),
      `import { Writable } from 'node:stream';
import { run, BoxbuildError } from 'boxbuild';
const controller = new AbortController();
// Aborts once the command has started (its first output).
const stdout = new Writable({ write(_chunk, _encoding, done) { controller.abort('enough'); done(); } });
const running = run({ box: 'debian', argv: ['sh', '-c', 'echo started; sleep 60'], accel: 'tcg', cacheDir: process.env.CACHE, signal: controller.signal, stdout });
const error = await running.then(() => undefined, (error) => error);
console.log(JSON.stringify({ isBoxbuildError: error instanceof BoxbuildError, kind: error?.kind, exitCode: error?.exitCode, cause: error?.cause }));
`,
    );
    const tmp = tempDir();
    const { stdout } = await execa('node', ['abort.mjs'], { cwd: app, env: { CACHE: TEST_CACHE, TMPDIR: tmp } });
    expect(JSON.parse(stdout)).toEqual({ isBoxbuildError: true, kind: 'interrupted', exitCode: 130, cause: 'enough' });
    expectNoLeftovers(tmp);
  });

  test('a run handle: its stdout line by line as it comes, kill(); config files when asked for, errors in the library\'s words', async () => {
    writeFileSync(join(app, '.boxbuild.json'), JSON.stringify({ timeout: '3s' }));
    writeFileSync(
      join(app, 'handle.mjs'),
      `import { run } from 'boxbuild';
const running = run({ box: 'debian', argv: ['sh', '-c', 'echo one; echo two; sleep 60'], accel: 'tcg', cacheDir: process.env.CACHE });
const lines = [];
for await (const line of running) {
  lines.push(line);
  if (lines.length === 2) running.kill();
}
const error = await running.then(() => undefined, (error) => error);
const unconfigured = await run({ box: 'debian', argv: ['true'], accel: 'tcg', cacheDir: process.env.CACHE });
const limited = await run({ box: 'debian', argv: ['sleep', '60'], accel: 'tcg', cacheDir: process.env.CACHE, config: true }).then(() => undefined, (error) => error);
console.log(JSON.stringify({ lines, kind: error?.kind, unconfigured: unconfigured.exitCode, limited: [limited?.kind, limited?.message] }));
`,
    );
    const tmp = tempDir();
    const { stdout } = await execa('node', ['handle.mjs'], { cwd: app, env: { CACHE: TEST_CACHE, TMPDIR: tmp } });
    const seen = JSON.parse(stdout);
    expect(seen).toMatchObject({ lines: ['one', 'two'], kind: 'interrupted', unconfigured: 0 });
    expect(seen.limited[0]).toBe('timeout');
    expect(seen.limited[1]).toMatch(/^the run did not finish within timeout 3 s \(it was [a-z ]+\)/);
    expectNoLeftovers(tmp);
  });

  test('its types: a TypeScript program type-checks against the installed package', async () => {
    writeFileSync(
      join(app, 'check.ts'),
      `import { type RunHandle, type RunResult, BoxbuildError, run } from 'boxbuild';
export async function twice(): Promise<RunResult[]> {
  const handle: RunHandle = run({ box: 'debian', argv: ['true'], shares: [{ host: '.', readOnly: true }], env: { A: 'b' } });
  for await (const line of handle) console.log(line.toUpperCase());
  const one = await handle;
  if (one.exitCode !== 0) throw new BoxbuildError('usage', 'unexpected');
  // @ts-expect-error argv is required
  await run({ box: 'debian' });
  return [one];
}
`,
    );
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, typeRoots: [join(REPO, 'node_modules/@types')], types: ['node'] }, files: ['check.ts'] }));
    const checked = await execa(join(REPO, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: app, reject: false });
    expect([checked.exitCode, checked.stdout]).toEqual([0, '']);
  });
});
