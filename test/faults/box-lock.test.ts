import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, onTestFinished, test, vi } from 'vitest';
import { tryLock, withLock } from '../../src/box/lock.js';
import { runCli, startCli } from '../helpers/cli.js';
import { processesMentioning, processesOf } from '../helpers/temp.js';
import { fakeAptTools, isAlive, testDir, untilFile, untilStderr } from './box-fakes.js';

/** A fresh box cache and fake apt tools; boxbuild runs with them. */
function setUp() {
  const dir = testDir('bb-faults-lock-');
  const cache = join(dir, 'cache');
  const fake = fakeAptTools(dir);
  const env = (apt: string) => ({ BOXBUILD_CACHE_DIR: cache, PATH: fake.path, FAKE_APT: apt });
  /** Starts `box make debian`; stopped with SIGTERM (which stops its tools too) if the test ends first. */
  const startMake = (apt: string) => {
    const child = startCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env(apt) });
    onTestFinished(async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await child;
      }
    });
    return child;
  };
  return { cache, fake, env, startMake };
}

const makeDirsIn = (cache: string) => readdirSync(join(cache, 'tmp'), { recursive: true }).map(String).filter((entry) => /(^|\/)make-[^/]*$/.test(entry));

describe('box making and its lock', () => {
  test('Ctrl-C stops a wait for the lock at once; SIGTERM stops a make and kills apt-get; the lock is free afterwards', async () => {
    const { cache, fake, env, startMake } = setUp();
    const holder = startMake('hang');
    await untilFile(fake.pidFile);
    const aptGet = Number(readFileSync(fake.pidFile, 'utf8'));

    const waiter = startMake('hang');
    await untilStderr(waiter, `boxbuild: waiting for pid ${holder.pid}, making box debian (x86_64)\n`); // the line the README quotes
    waiter.kill('SIGINT');
    const waited = await waiter;
    expect(waited.exitCode).toBe(130);
    expect(String(waited.stderr)).toMatch(/^boxbuild: error: interrupted; stopped waiting for pid \d+, making box debian \(x86_64\)$/m);
    expect(holder.exitCode).toBeNull(); // the waiter did not wait for the holder

    holder.kill('SIGTERM');
    const held = await holder;
    expect(held.exitCode).toBe(143);
    expect(String(held.stderr)).toMatch(/^boxbuild: error: terminated; .*$/m);
    expect(isAlive(aptGet)).toBe(false);
    expect(makeDirsIn(cache)).toEqual([]);
    expect(existsSync(join(cache, 'boxes', 'debian'))).toBe(false);
    expect(processesMentioning(cache)).toEqual([]);

    // The lock is free: the next make starts at once (and fails, as apt-get now does).
    const next = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env('fail') });
    expect(next.stderr).not.toContain('waiting');
    expect(next.exitCode).toBe(69);
  });

  test('a second signal during a make leaves at once; what it leaves is removed by the next make, and the lock is free', async () => {
    const { cache, fake, env, startMake } = setUp();
    const maker = startMake('hang');
    await untilFile(fake.pidFile);
    const aptGet = Number(readFileSync(fake.pidFile, 'utf8'));
    maker.kill('SIGTERM');
    maker.kill('SIGTERM');
    expect((await maker).exitCode).toBe(143);
    expect(isAlive(aptGet)).toBe(false);
    expect(existsSync(join(cache, 'boxes', 'debian'))).toBe(false);

    const next = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env('fail') });
    expect(next.stderr).not.toContain('waiting');
    expect(next.exitCode).toBe(69);
    expect(makeDirsIn(cache)).toEqual([]);
    expect(processesMentioning(cache)).toEqual([]);
  });

  test('a wait for the lock gives up after BOXBUILD_LOCK_TIMEOUT with one line, exit 69', async () => {
    const { fake, env, startMake } = setUp();
    const holder = startMake('hang');
    await untilFile(fake.pidFile);
    const waiter = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: { ...env('hang'), BOXBUILD_LOCK_TIMEOUT: '1s' } });
    expect(waiter.exitCode).toBe(69);
    expect(waiter.stderr).toMatch(new RegExp(`^boxbuild: error: gave up after 1 s waiting for pid ${holder.pid}, making box debian \\(x86_64\\) \\(BOXBUILD_LOCK_TIMEOUT sets how long to wait\\)$`, 'm'));
    expect(holder.exitCode).toBeNull();
  });

  test('an empty lock file left by an older boxbuild does not block anyone', async () => {
    const { cache, env } = setUp();
    mkdirSync(join(cache, 'locks'), { recursive: true });
    writeFileSync(join(cache, 'locks', 'debian-x86_64.lock'), '');
    const result = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env('fail'), timeout: 60_000 });
    expect(result.stderr).not.toContain('waiting');
    expect(result.exitCode).toBe(69);
  });

  test('a failed tool or a plain error while making a box is one line and exit 69', async () => {
    const { cache, env } = setUp();
    const failedTool = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env('empty') });
    expect(failedTool.exitCode).toBe(69);
    expect(failedTool.stderr).toMatch(/^boxbuild: error: reading the version of linux-image-6\.1\.0-fake-amd64_1_amd64\.deb failed: .+$/m);
    expect(failedTool.stderr.split('\n').filter((line) => line.startsWith('boxbuild: error'))).toHaveLength(1);

    rmSync(join(cache, 'tmp'), { recursive: true });
    writeFileSync(join(cache, 'tmp'), 'not a directory');
    const plainError = await runCli(['box', 'make', 'debian', '--arch', 'x86_64'], { env: env('empty') });
    expect(plainError.exitCode).toBe(69);
    expect(plainError.stderr).toMatch(/^boxbuild: error: making box debian \(x86_64\) failed: .*(ENOTDIR|EEXIST).*$/m);
  });

  test('box prune during a make leaves the make alone and says so', async () => {
    const { cache, fake, env, startMake } = setUp();
    const maker = startMake('hang');
    try {
      await untilFile(fake.pidFile);
      const before = makeDirsIn(cache);
      expect(before).toHaveLength(1);
      const pruned = await runCli(['box', 'prune'], { env: env('hang') });
      expect(pruned.exitCode).toBe(0);
      expect(pruned.stderr).toContain(`boxbuild: skipped box debian (x86_64): in use by pid ${maker.pid}`);
      expect(makeDirsIn(cache)).toEqual(before);
    } finally {
      maker.kill('SIGTERM');
      await maker;
    }
    expect(makeDirsIn(cache)).toEqual([]);
  });
});

test('a released lock is free at once: the next try takes it, every time', async () => {
  const path = join(testDir('bb-faults-release-'), 'locks', 'x.lock');
  for (let round = 0; round < 50; round++) {
    const lock = await tryLock(path);
    expect(lock, `round ${round}`).toHaveProperty('release');
    if ('release' in lock) await lock.release();
  }
  expect(processesMentioning(path)).toEqual([]);
});

describe('a wait for a lock that is given up', () => {
  /** A held lock in a fresh directory, and the flock(1) processes on it. */
  async function heldLock() {
    const path = join(testDir('bb-faults-wait-'), 'locks', 'x.lock');
    const held = await tryLock(path, 'holding it');
    if ('heldBy' in held) throw new Error('the fresh lock is held');
    onTestFinished(() => held.release());
    return { path, held, flocks: () => processesMentioning(path) };
  }

  test('Ctrl-C during the wait: its flock(1) is gone when the wait rejects, the lock stays with its holder', async () => {
    const { path, flocks } = await heldLock();
    const controller = new AbortController();
    const waiting = withLock(path, async () => 'ran', { doing: 'waiting', signal: controller.signal });
    await vi.waitFor(() => expect(flocks()).toHaveLength(2));
    controller.abort('SIGINT');
    await expect(waiting).rejects.toMatchObject({ exitCode: 130, message: 'interrupted; stopped waiting for pid ' + process.pid + ', holding it' });
    expect(flocks()).toHaveLength(1);
    expect(await tryLock(path)).toEqual({ heldBy: process.pid });
  });

  test('a signal aborted before the wait began stops it at once and leaves no flock(1); the lock is free once its holder lets go', async () => {
    const { path, held, flocks } = await heldLock();
    const controller = new AbortController();
    controller.abort('SIGTERM');
    const waiting = withLock(path, async () => 'ran', { doing: 'waiting', signal: controller.signal });
    const outcome = await Promise.race([waiting.catch((error: unknown) => error), sleep(2000, 'still waiting')]);
    expect(outcome).toMatchObject({ exitCode: 143 });
    await held.release();
    expect(flocks()).toEqual([]);
    const again = await tryLock(path);
    expect(again).toHaveProperty('release');
    if ('release' in again) await again.release();
  });

  test('a timeout: one line, exit 69, no flock(1) left', async () => {
    const { path, flocks } = await heldLock();
    await expect(withLock(path, async () => 'ran', { doing: 'waiting', timeoutMs: 300 })).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/^gave up after 0\.3 s waiting for pid \d+, holding it/) });
    expect(flocks()).toHaveLength(1);
  });
});

describe('a released lock', () => {
  test('leaves no process: the shell flock(1) runs is reaped before release resolves (30 times)', async () => {
    const dir = testDir('bb-faults-release-');
    const path = join(dir, 'locks', 'x.lock');
    // The lock's processes inherit TMPDIR: that is how processesMentioning finds them, zombies too.
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    onTestFinished(() => {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    });
    for (let round = 0; round < 30; round++) {
      await withLock(path, async () => undefined, { doing: 'holding it' });
      expect(processesMentioning(dir), `round ${round}`).toEqual([]);
    }
  });

  // A process the holder forked would be left to init to reap once killed; an init that reaps late
  // (this machine's does) held up every release by a second.
  test('is held by one process, boxbuild\'s own child: none is left to init to reap', async () => {
    const dir = testDir('bb-faults-holder-');
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    onTestFinished(() => {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    });
    await withLock(join(dir, 'locks', 'x.lock'), async () => {
      expect(processesOf(dir).map((p) => p.ppid)).toEqual([process.pid]);
    }, { doing: 'holding it' });
  });
});
