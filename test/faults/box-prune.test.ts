import { chownSync, copyFileSync, linkSync, mkdirSync, readFileSync, readdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { describe, expect, onTestFinished, test, vi } from 'vitest';
import { pruneCache } from '../../src/box/manage.js';
import { CLI, REPO } from '../helpers/env.js';
import { testDir } from './box-fakes.js';

test('prune reports the space it really frees: allocated blocks, hard links shared with the current version not counted', async () => {
  const cache = testDir('bb-faults-prune-');
  const base = join(cache, 'boxes', 'tbox', 'x86_64');
  for (const version of ['old', 'new']) mkdirSync(join(base, version), { recursive: true });
  symlinkSync('new', join(base, 'current'));
  writeFileSync(join(base, 'new', 'kernel'), Buffer.alloc(1 << 20, 1));
  linkSync(join(base, 'new', 'kernel'), join(base, 'old', 'kernel')); // reused by the new version
  writeFileSync(join(base, 'old', 'system.qcow2'), Buffer.alloc(64 << 10, 1));
  truncateSync(join(base, 'old', 'system.qcow2'), 100 * 2 ** 30); // 100 GiB long, 64 KiB allocated

  const { removed, freed } = await pruneCache(cache);
  expect(removed).toEqual([join(base, 'old')]);
  expect(freed).toBeGreaterThanOrEqual(64 << 10);
  expect(freed).toBeLessThan(1 << 20);
});

describe('the run directories of killed runs', () => {
  /** A real process that marks `dir` as its run directory (as a run does when it starts) and lives on until killed. */
  async function runOwning(dir: string) {
    mkdirSync(dir);
    const mark = `await (await import(${JSON.stringify(pathToFileURL(join(REPO, 'dist/util/run-dirs.js')).href)})).markRunDir(process.argv[1]); setInterval(() => {}, 1 << 30);`;
    const child = execa(process.execPath, ['--input-type=module', '-e', mark, dir], { reject: false, stdio: 'ignore' });
    onTestFinished(() => void child.kill('SIGKILL'));
    await vi.waitFor(() => expect(readdirSync(dir)).toContain('owner'), { timeout: 10_000, interval: 20 });
    return { child }; // not the child itself: a promise, which an async function would wait for
  }
  const ownerOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'owner'), 'utf8')) as { start: string };

  test('box prune removes those whose owner is gone (also when its pid was reused), never a live run\'s, a link, an unmarked or foreign one', async () => {
    const tmp = testDir('bb-faults-rundirs-');
    const killed = join(tmp, 'boxbuild-Kil1ed');
    const { child: run } = await runOwning(killed);
    writeFileSync(join(killed, 'guest-ram'), Buffer.alloc(1 << 20, 1)); // what a killed run leaves: its guest's RAM
    run.kill('SIGKILL');
    await run;
    const live = join(tmp, 'boxbuild-image-L1veAb');
    await runOwning(live);
    // The same pid now belongs to another process: the start time tells them apart.
    const reused = join(tmp, 'boxbuild-Reused');
    mkdirSync(reused);
    writeFileSync(join(reused, 'owner'), JSON.stringify({ ...JSON.parse(readFileSync(join(live, 'owner'), 'utf8')), start: String(Number(ownerOf(live).start) - 1) }));
    // Marked as the killed run's, but not to be touched: a link to one, another name, unmarked.
    const elsewhere = join(tmp, 'elsewhere');
    mkdirSync(elsewhere);
    copyFileSync(join(killed, 'owner'), join(elsewhere, 'owner'));
    symlinkSync(elsewhere, join(tmp, 'boxbuild-L1nked'));
    mkdirSync(join(tmp, 'boxbuild-tests-Abc123'));
    copyFileSync(join(killed, 'owner'), join(tmp, 'boxbuild-tests-Abc123', 'owner'));
    mkdirSync(join(tmp, 'boxbuild-NoMark'));
    if (process.getuid?.() === 0) {
      mkdirSync(join(tmp, 'boxbuild-Others'));
      copyFileSync(join(killed, 'owner'), join(tmp, 'boxbuild-Others', 'owner'));
      chownSync(join(tmp, 'boxbuild-Others'), 65534, 65534);
    }

    const prune = await execa(process.execPath, [CLI, 'box', 'prune'], { env: { TMPDIR: tmp, BOXBUILD_CACHE_DIR: testDir('bb-faults-cache-') }, reject: false });
    expect([prune.exitCode, prune.stderr]).toEqual([0, '']);
    expect(prune.stdout).toMatch(/^pruned 2 items, freed 1\.\d\d MiB$/);
    const kept = ['boxbuild-L1nked', 'boxbuild-NoMark', 'boxbuild-image-L1veAb', 'boxbuild-tests-Abc123', 'elsewhere', ...(process.getuid?.() === 0 ? ['boxbuild-Others'] : [])];
    expect(readdirSync(tmp).sort()).toEqual(kept.sort());
    expect(readdirSync(elsewhere)).toEqual(['owner']);
  });
});
