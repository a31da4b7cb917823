import { linkSync, mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { pruneCache } from '../../src/box/manage.js';
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
