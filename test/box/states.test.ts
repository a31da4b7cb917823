import { existsSync, mkdirSync, readlinkSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { listStates, statesCapBytes, tidyStates } from '../../src/box/states.js';
import { tempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;

/** A cache with one current box version, and states saved by hand as saveState does: `<shape>.d/<id>`, then the link. */
function fakeCache() {
  const cache = tempDir();
  const boxDir = join(cache, 'boxes/debian/x86_64/v1');
  mkdirSync(boxDir, { recursive: true });
  symlinkSync('v1', join(cache, 'boxes/debian/x86_64/current'));
  const save = (shape: string, id: string, sizeMiB: number, savedAt: string) => {
    const dir = join(cache, 'states', `${shape}.d`, id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ box: 'debian', arch: 'x86_64', boxDir, size: sizeMiB * MiB, savedAt }));
    const link = join(cache, 'states', shape);
    symlinkSync(`${shape}.d/${id}`, `${link}.new`);
    renameSync(`${link}.new`, link);
    return dir;
  };
  return { cache, save };
}

describe('warm states are tidied when one is saved', () => {
  test('the state a new one replaces goes at once; a state other runs still use stays', async () => {
    const { cache, save } = fakeCache();
    const old = save('shape-a', 'aa-1', 100, '2026-01-01T00:00:00Z');
    const other = save('shape-b', 'bb-1', 100, '2026-01-02T00:00:00Z');
    const fresh = save('shape-a', 'cc-1', 100, '2026-01-03T00:00:00Z');
    await tidyStates(cache, fresh, 2048 * MiB);
    expect([existsSync(old), existsSync(other), existsSync(fresh)]).toEqual([false, true, true]);
    expect(readlinkSync(join(cache, 'states/shape-a'))).toBe('shape-a.d/cc-1');
  });

  test('over the cap, the oldest states of other shapes go until the rest fit; the new one always stays', async () => {
    const { cache, save } = fakeCache();
    save('s1', 'a-1', 100, '2026-01-01T00:00:00Z');
    save('s2', 'b-1', 100, '2026-01-02T00:00:00Z');
    save('s3', 'c-1', 100, '2026-01-03T00:00:00Z');
    const newest = save('s4', 'd-1', 100, '2026-01-04T00:00:00Z');
    await tidyStates(cache, newest, 250 * MiB);
    expect((await listStates(cache)).map((state) => state.link.split('/').pop()).sort()).toEqual(['s3', 's4']);
    await tidyStates(cache, newest, 150 * MiB);
    expect((await listStates(cache)).map((state) => state.link.split('/').pop())).toEqual(['s4']);
    await tidyStates(cache, newest, 128 * MiB); // the new state alone is over the cap: it stays
    expect((await listStates(cache)).map((state) => state.link.split('/').pop())).toEqual(['s4']);
  });

  test('the cap: 2 GiB, or $BOXBUILD_STATES_MAX', () => {
    expect(statesCapBytes({})).toBe(2048 * MiB);
    expect(statesCapBytes({ BOXBUILD_STATES_MAX: '4G' })).toBe(4096 * MiB);
    expect(() => statesCapBytes({ BOXBUILD_STATES_MAX: 'lots' })).toThrow('BOXBUILD_STATES_MAX: "lots" is not a size');
  });
});
