import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test, vi } from 'vitest';
import type { BuildResult, MatrixRun } from '../../src/matrix/types.js';
import { expectNoLeftovers, runIsolated, startIsolated } from '../helpers/box-cli.js';
import { REPO } from '../helpers/env.js';
import { processesMentioning, tempDir } from '../helpers/temp.js';

/*
 * boxbuild matrix against real VMs of the debian box: builds in parallel slots, one failing, the
 * report (also as a real headless browser shows it), the change on the next run, Ctrl-C.
 */

/** A description directory whose `build` is the given shell script. */
function description(parent: string, name: string, script: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'build'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'build'), 0o755);
  return dir;
}

const readRun = (results: string): MatrixRun => JSON.parse(readFileSync(join(results, 'results.json'), 'utf8'));
const byName = (run: MatrixRun, name: string): BuildResult => run.builds.find((build) => build.name === name)!;

/** Opens the page in headless chromium (a private profile, no process left): a screenshot and the DOM. */
async function inBrowser(page: string): Promise<{ png: Buffer; dom: string }> {
  const dir = tempDir('chromium-');
  const common = ['--headless', '--no-sandbox', '--disable-gpu', `--user-data-dir=${join(dir, 'profile')}`, '--window-size=1280,900'];
  const env = { HOME: dir };
  const screenshot = join(dir, 'page.png');
  try {
    await execa('chromium', [...common, `--screenshot=${screenshot}`, `file://${page}`], { env, timeout: 90_000 });
    const { stdout } = await execa('chromium', [...common, '--dump-dom', `file://${page}`], { env, timeout: 90_000 });
    return { png: readFileSync(screenshot), dom: stdout };
  } finally {
    await vi.waitFor(() => expect(processesMentioning(dir)).toEqual([]), { timeout: 20_000, interval: 200 });
  }
}

describe('boxbuild matrix FILE', () => {
  test('three builds in two slots, one failing: exit 1, every build ran, its log whole; results.json, junit.xml, index.html; the next run shows the fix', { timeout: 600_000 }, async () => {
    const dir = tempDir();
    // stdout and stderr reach the log by separate channels: only what one of them says keeps its order.
    const fail = description(dir, 'fail', 'echo "to stderr" >&2\nsleep 1\nfor i in $(seq 1 100); do echo "fail line $i"; done\necho "<script>alert(1)</script>"\nexit 3');
    const matrix = join(dir, 'nightly.yaml');
    writeFileSync(
      matrix,
      `defaults: { tags: [nightly], timeout: 10m }
builds:
  - box: debian
    arch: x86_64
    description: fail
  - box: debian
    arch: [x86_64, aarch64]
    description: ${join(REPO, 'examples/hello')}
    args: [one, two]
`,
    );
    const results = join(dir, 'results');
    const first = await runIsolated(['matrix', matrix, '--slots', '2', '--results', results]);
    expect(first.exitCode).toBe(1);
    const hello = `${join(REPO, 'examples/hello')} one two`;
    const names = { fail: 'debian x86_64 fail', x86: `debian x86_64 ${hello}`, arm: `debian aarch64 ${hello}` };
    expect(first.stderr).toContain(`boxbuild: matrix ${matrix}: 3 builds, 2 at once; results in ${results}`);
    expect(first.stderr).toMatch(new RegExp(`^FAILED ${names.fail} \\(exit 3\\) in [\\d.]+ s, log: ${results}/builds/[0-9a-f]{12}/log\\.txt$`, 'm'));
    expect(first.stderr).toContain(`passed ${names.x86} in `);
    expect(first.stderr).toContain(`passed ${names.arm} in `);
    expect(first.stderr).toMatch(/boxbuild: matrix: 2 passed, 1 FAILED in .*; report: .*index\.html$/);

    const run = readRun(results);
    expect(run.builds.map((build) => [build.name, build.status, build.exitCode])).toEqual([
      [names.fail, 'failed', 3],
      [names.x86, 'passed', 0],
      [names.arm, 'passed', 0],
    ]);
    const failed = byName(run, names.fail);
    const log = readFileSync(failed.log, 'utf8');
    expect(log.match(/^fail line \d+$/gm)).toHaveLength(100);
    expect(log).toMatch(/^to stderr$/m);
    expect(failed.logTail).toEqual([...Array.from({ length: 29 }, (_, i) => `fail line ${i + 72}`), '<script>alert(1)</script>']);
    const arm = byName(run, names.arm);
    expect(arm).toMatchObject({ arch: 'aarch64', tags: ['nightly'], attempts: 1, ranOn: 'local', provenance: { box: 'debian', arch: 'aarch64', accelerator: 'tcg', boxbuild: expect.any(String), version: expect.any(String) } });
    const tarball = arm.artifacts.find((artifact) => artifact.path === 'hello.tar.gz')!;
    const target = join(results, 'builds', arm.id, 'target');
    expect(tarball.sha256).toBe(createHash('sha256').update(readFileSync(join(target, 'hello.tar.gz'))).digest('hex'));
    expect(readFileSync(join(target, 'hello/built-on.txt'), 'utf8')).toContain('aarch64');

    const junit = readFileSync(join(results, 'junit.xml'), 'utf8');
    expect(junit).toMatch(/<testsuites name="[^"]*" tests="3" failures="1" errors="0" skipped="0"/);
    expect(junit).toContain(`<testcase name="${names.arm}" classname="debian.aarch64"`);
    expect(junit).toContain('<failure type="failed" message="the build failed (exit status 3)">fail line 72\n');
    expect(junit).toContain('&lt;script&gt;alert(1)&lt;/script&gt;</failure>');

    const page = join(results, 'index.html');
    const before = await inBrowser(page);
    expect(before.png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(before.png.length).toBeGreaterThan(10_000);
    expect(before.dom).toContain('<span class="passed">2 passed</span><span class="failed">1 failed</span>');
    expect(before.dom).toContain(`<div class="status">failed</div><div class="meta">`);
    expect(before.dom).toContain('<th>aarch64</th><th>x86_64</th>');
    expect(before.dom).toContain(`<code>${join(REPO, 'examples/hello')} one two</code>`);
    expect(before.dom).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(before.dom).not.toContain('<script>');
    expect(before.dom).toContain(`<a href="builds/${failed.id}/log.txt">whole log</a>`);

    // The failing build fixed: the next run passes, and the report says so against the previous run.
    writeFileSync(join(fail, 'build'), '#!/bin/sh\necho fixed\n');
    const second = await runIsolated(['matrix', matrix, '--slots', '2', '--results', results]);
    expect(second.exitCode).toBe(0);
    expect(second.stderr).toContain(`boxbuild: fixed: ${names.fail}`);
    expect(readRun(results).builds.map((build) => build.status)).toEqual(['passed', 'passed', 'passed']);
    expect(readRun(results).builds.map((build) => build.id)).toEqual(run.builds.map((build) => build.id));
    expect(JSON.parse(readFileSync(join(results, 'previous.json'), 'utf8'))).toEqual(run);
    expect(readFileSync(failed.log, 'utf8')).toBe('fixed\n');
    const after = await inBrowser(page);
    expect(after.dom).toContain(`<span class="change fixed">fixed</span> ${names.fail}: failed → passed`);
    expect(after.dom).toContain('<span class="passed">3 passed</span>');
  });

  test('Ctrl-C at the terminal stops the running builds (their VMs stopped, nothing left) and cancels the rest: exit 130, the report written', { timeout: 300_000 }, async () => {
    const dir = tempDir();
    description(dir, 'slow', 'echo sleeping; sleep 600');
    const matrix = join(dir, 'slow.yaml');
    writeFileSync(matrix, `builds:\n${['a', 'b', 'c'].map((arg) => `  - { box: debian, arch: x86_64, description: slow, args: [${arg}] }\n`).join('')}`);
    const results = join(dir, 'results');
    // In a process group of its own, as a terminal's foreground job: Ctrl-C signals the whole group.
    const { tmp, child } = startIsolated(['matrix', matrix, '--slots', '2', '--results', results], { detached: true });
    // Both slots' builds are running in their guests.
    const logs = () => (existsSync(join(results, 'builds')) ? readdirSync(join(results, 'builds')).map((id) => join(results, 'builds', id, 'log.txt')) : []);
    await vi.waitFor(() => expect(logs().filter((log) => existsSync(log) && readFileSync(log, 'utf8').includes('sleeping'))).toHaveLength(2), { timeout: 120_000, interval: 200 });
    const stoppedAt = Date.now();
    process.kill(-child.pid!, 'SIGINT');
    const ended = await child;
    expect(ended.exitCode).toBe(130);
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    expectNoLeftovers(tmp);
    const run = readRun(results);
    expect(run.builds.map((build) => [build.label, build.status, build.attempts])).toEqual([
      ['slow a', 'cancelled', 1],
      ['slow b', 'cancelled', 1],
      ['slow c', 'cancelled', 0],
    ]);
    expect(readFileSync(join(results, 'junit.xml'), 'utf8')).toContain('skipped="3"');
    expect(String(ended.stderr)).toMatch(/boxbuild: matrix: 3 cancelled in /);
  });
});
