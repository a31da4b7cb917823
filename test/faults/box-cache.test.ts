import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { listCached, pruneCache } from '../../src/box/manage.js';
import { parseRegistry } from '../../src/box/registry.js';
import { type BoxRequest, ensureBox } from '../../src/box/resolve.js';
import { listStates } from '../../src/box/states.js';
import { PROFILES } from '../../src/qemu/profiles.js';
import { resolveAccel } from '../../src/qemu/accel.js';
import { BoxServer } from '../box/server.js';
import { testDir } from './box-fakes.js';

let server: BoxServer;
let logged: string[];

function request(cacheRoot: string): BoxRequest {
  const doc = { boxes: { tbox: { buildProgram: '/b', mirrors: [server.url], files: { kernel: { url: 'kernel', sha256: 'sidecar' }, initrd: { url: 'initrd', sha256: 'sidecar' } }, arches: { x86_64: {} } } } };
  const box = parseRegistry('test-boxes.json', JSON.stringify(doc))[0]!;
  return { cacheRoot, box, arch: 'x86_64', log: (line) => logged.push(line), updateCheck: false };
}

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
  server.publish('/kernel', randomBytes(64 << 10), true);
  server.publish('/initrd', randomBytes(4096), true);
  logged = [];
});

afterEach(() => server.close());

describe('damaged cache files', () => {
  test('a deleted box.json is repaired once, saying so, not downloaded again on every run', async () => {
    const cache = testDir('bb-faults-cache-');
    const first = await ensureBox(request(cache));
    rmSync(join(first.dir, 'box.json'));
    const repaired = await ensureBox(request(cache));
    expect(logged).toContainEqual(expect.stringMatching(/^box tbox \(x86_64\): its manifest .*\/box\.json is missing or invalid; downloading it again$/));
    expect(repaired.dir).toBe(first.dir);
    expect(JSON.parse(readFileSync(join(first.dir, 'box.json'), 'utf8'))).toEqual(first.manifest);
    const downloads = server.hitsOf('/kernel').length;
    expect(downloads).toBe(2);
    await ensureBox(request(cache));
    expect(server.hitsOf('/kernel')).toHaveLength(downloads);
  });

  test.each([['truncated', '{"name": "tbox", "arch": "x86'], ['of another shape', '{"name": "tbox"}']])('a box.json that is %s counts as missing', async (_, text) => {
    const cache = testDir('bb-faults-cache-');
    const first = await ensureBox(request(cache));
    writeFileSync(join(first.dir, 'box.json'), text);
    expect((await listCached(cache)).map((variant) => variant.installed)).toEqual([undefined]);
    expect((await ensureBox(request(cache))).manifest).toEqual(first.manifest);
  });

  test.each([['truncated', '{"box": "debian", "arch'], ['of another shape', '{}']])('a warm state whose state.json is %s counts as none, and prune drops it', async (_, text) => {
    const cache = testDir('bb-faults-cache-');
    const states = join(cache, 'states');
    mkdirSync(join(states, 'shape.d', 'k-99999999'), { recursive: true }); // saved by a pid that cannot exist
    writeFileSync(join(states, 'shape.d', 'k-99999999', 'state.json'), text);
    symlinkSync('shape.d/k-99999999', join(states, 'shape'));
    expect(await listStates(cache)).toEqual([]);
    expect((await pruneCache(cache)).removed).toEqual([join(states, 'shape.d', 'k-99999999')]);
  });

  test.each([['truncated', '{"abc'], ['of another shape', '{"k": {"usable": "yes"}}']])('a kvm-probe.json that is %s is probed again and rewritten whole', async (_, text) => {
    const cache = testDir('bb-faults-cache-');
    writeFileSync(join(cache, 'kvm-probe.json'), text);
    const context = { profile: PROFILES.x86_64, hostArch: 'x86_64' as const, kernel: join(cache, 'no-kernel'), cacheRoot: cache, probeTimeoutMs: 2000, notice: () => {} };
    expect(await resolveAccel('auto', context)).toMatch(/^(kvm|tcg)$/);
    const written = JSON.parse(readFileSync(join(cache, 'kvm-probe.json'), 'utf8')) as Record<string, { usable: boolean; reason: string }>;
    expect(Object.values(written)).toEqual([{ usable: expect.any(Boolean), reason: expect.any(String) }]);
  });

  test('"KVM is not usable" is said once per host boot: by the run that probed, not by the next', async () => {
    const cache = testDir('bb-faults-cache-');
    const said: string[] = [];
    const context = { profile: PROFILES.x86_64, hostArch: 'x86_64' as const, kernel: join(cache, 'no-kernel'), cacheRoot: cache, probeTimeoutMs: 2000, notice: (line: string) => said.push(line) };
    const first = await resolveAccel('auto', context);
    expect(said).toEqual(first === 'tcg' ? [expect.stringMatching(/^KVM is not usable here \(.+\); using software emulation \(TCG\) until the host reboots$/)] : []);
    expect(await resolveAccel('auto', context)).toBe(first);
    expect(said).toHaveLength(first === 'tcg' ? 1 : 0);
  });
});
