import { getEventListeners } from 'node:events';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { InstalledBox } from '../../../src/box/cache.js';
import type { BoxEntry } from '../../../src/box/registry.js';
import { BoxbuildError } from '../../../src/errors.js';
import { runOnBox } from '../../../src/runner/agent.js';
import { inRun } from '../../../src/runner/context.js';
import type { RunOptions } from '../../../src/runner/options.js';
import { FakeDriver, type FakeScript, type Step } from '../../helpers/fake-driver.js';

/* The agent run's stages against a fake driver (no VM): what each path leaves behind, how each wait ends. */

const box: BoxEntry = {
  name: 'fake',
  description: 'a box of the fake driver',
  protocol: 'boxbuild',
  memoryMiB: 256,
  cpus: 1,
  console: 'ttyS0',
  cmdline: '',
  arches: { x86_64: { cmdline: '', sources: [], packages: [] } },
  origin: 'test',
};

let work: string;
let savedTmpdir: string | undefined;
let notices: string[];
let output: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'agent-test-'));
  savedTmpdir = process.env.TMPDIR;
  process.env.TMPDIR = work; // the run's private directory goes here: checked for leftovers
  notices = [];
  output = '';
});
afterEach(() => {
  process.env.TMPDIR = savedTmpdir;
});

const installed = (): InstalledBox => ({
  dir: work,
  manifest: { name: 'fake', arch: 'x86_64', version: '1', files: { kernel: { name: 'kernel', sha256: '', size: 0 }, initrd: { name: 'initrd', sha256: '', size: 0 } }, sources: {} },
});

function options(extra: Partial<RunOptions> = {}): RunOptions {
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => ((output += chunk.toString()), done()) });
  return { box: 'fake', cacheRoot: work, accel: 'tcg', sharing: '9p', bootTimeoutMs: 10_000, network: { mode: 'none', allow: [] }, stdout: sink, stderr: sink, notice: (line) => notices.push(line), ...extra };
}

function run(fake: FakeDriver, extra: Partial<RunOptions> = {}): Promise<number> {
  const opts = options(extra);
  return inRun(opts, (ctx) => runOnBox(ctx, opts, box, installed(), { shares: [], argv: ['build'], cwd: '/' }, fake.factory));
}

/** Nothing of the run is left: no resource of the driver, no private directory. */
function expectNothingLeft(fake: FakeDriver): void {
  expect([...fake.held]).toEqual([]);
  expect(readdirSync(work).filter((name) => name.startsWith('boxbuild-'))).toEqual([]);
}

const script = (more: FakeScript = {}): FakeScript => ({ output: 'built\n', status: 3, ...more });

describe('a run in stages, against a fake driver', () => {
  test("the command's output and status; booted, saved for the next runs, attached; everything undone", async () => {
    const fake = new FakeDriver(script());
    expect(await run(fake)).toBe(3);
    expect(output).toBe('built\n');
    expect(fake.events.filter((event) => !/^[+-]/.test(event))).toEqual(['booted', 'saved', 'attached booted-guest#3']);
    expectNothingLeft(fake);
  });

  test('a saved state is restored (no boot)', async () => {
    const fake = new FakeDriver(script({ saved: 'restores' }));
    expect(await run(fake)).toBe(3);
    expect(fake.events).toContain('restored');
    expect(fake.events).not.toContain('booted');
    expectNothingLeft(fake);
  });

  test('a restore that fails falls back to a cold boot; the failed attempt is undone first', async () => {
    const fake = new FakeDriver(script({ saved: 'refused' }));
    expect(await run(fake)).toBe(3);
    expect(notices).toContain('the saved VM state could not be restored (refused by the fake)');
    const undoneRestore = fake.events.indexOf('-restored-guest#3');
    const undoneFirstShares = fake.events.indexOf('-sharing#1');
    const boot = fake.events.indexOf('booted');
    expect(undoneRestore).toBeGreaterThan(0);
    expect(undoneFirstShares).toBeGreaterThan(undoneRestore); // last in, first out
    expect(boot).toBeGreaterThan(undoneFirstShares);
    expect(fake.events).toContain('saved'); // the state is saved anew
    expectNothingLeft(fake);
  });

  test.each<[Step, FakeScript['saved']]>([
    ['share', undefined],
    ['connect', undefined],
    ['warm', undefined],
    ['boot', undefined],
    ['ready', undefined],
    ['restore', 'restores'],
    ['ready', 'restores'],
    ['command', undefined],
  ])('an abort while it waits at %s (saved state: %s) ends the run at once; nothing is left', async (step, saved) => {
    const fake = new FakeDriver(script({ hang: [step], saved }));
    const controller = new AbortController();
    const running = run(fake, { signal: controller.signal });
    while (!fake.events.includes(`hang ${step}`) && !(step === 'ready' || step === 'command')) await sleep(5);
    await sleep(step === 'ready' || step === 'command' ? 200 : 20);
    const began = Date.now();
    controller.abort('SIGINT');
    const error = await running.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BoxbuildError);
    expect((error as BoxbuildError).exitCode).toBe(130);
    expect(Date.now() - began).toBeLessThan(1000);
    expectNothingLeft(fake);
    expect(getEventListeners(controller.signal, 'abort')).toEqual([]);
  });

  test('--timeout names the stage the run was in', async () => {
    const fake = new FakeDriver(script({ hang: ['boot'] }));
    await expect(run(fake, { timeoutMs: 300 })).rejects.toThrow(/^the run did not finish within --timeout 0.3 s \(it was booting the VM\)$/);
    const silent = new FakeDriver(script({ hang: ['command'] }));
    await expect(run(silent, { timeoutMs: 300 })).rejects.toThrow(/^the run did not finish within --timeout 0.3 s \(it was running the command\); the VM was stopped$/);
    expectNothingLeft(fake);
    expectNothingLeft(silent);
  });

  test('a guest that never answers is given up after --boot-timeout', async () => {
    const fake = new FakeDriver(script({ hang: ['ready'] }));
    await expect(run(fake, { bootTimeoutMs: 200 })).rejects.toThrow('the guest showed no sign of life within --boot-timeout 0.2 s');
    expectNothingLeft(fake);
  });

  test('a cleanup step that throws does not skip the others, and its failure is the run\'s', async () => {
    const fake = new FakeDriver(script({ failingUndo: 'channel' }));
    await expect(run(fake)).rejects.toThrow(/^undoing channel#2 failed$/);
    expectNothingLeft(fake);
  });

  test("a build's failure wins over a cleanup's, which is told as a warning", async () => {
    const fake = new FakeDriver(script({ failingUndo: 'channel', hang: ['ready'] }));
    await expect(run(fake, { bootTimeoutMs: 100 })).rejects.toThrow('--boot-timeout');
    expect(notices).toContain('warning: cleaning up failed too: undoing channel#2 failed');
    expectNothingLeft(fake);
  });
});
