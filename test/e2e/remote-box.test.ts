import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BoxServer } from '../box/server.js';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/** The debian box's files, published over HTTP under a box of a test registry: the real download path. */
describe('a box served over HTTP', () => {
  const server = new BoxServer();
  let registry: string;
  let cache: string;

  beforeAll(async () => {
    await server.start();
    const box = join(TEST_CACHE, 'boxes/debian/x86_64/current');
    server.publish('/remote/kernel', readFileSync(join(box, 'kernel')), true);
    server.publish('/remote/initrd', readFileSync(join(box, 'initrd')), true);
    const debian = JSON.parse(readFileSync(join(REPO, 'boxes.json'), 'utf8')).boxes.debian;
    const entry = {
      description: 'the debian box, downloaded',
      buildProgram: debian.buildProgram,
      cmdline: debian.cmdline,
      mirrors: [`${server.url}/remote/`],
      files: { kernel: { url: 'kernel', sha256: 'sidecar' }, initrd: { url: 'initrd', sha256: 'sidecar' } },
      arches: { x86_64: debian.arches.x86_64 },
    };
    const dir = tempDir();
    registry = join(dir, 'boxes.json');
    cache = join(dir, 'cache');
    writeFileSync(registry, JSON.stringify({ boxes: { remote: entry } }));
  });
  afterAll(() => server.close());

  test('is downloaded and verified, a build runs in it, and the next run reuses it with one small request', async () => {
    const run = () => {
      const target = join(tempDir(), 'out');
      const args = ['--boxes', registry, '--box', 'remote', '--accel', 'tcg', '--', '--description', join(REPO, 'examples/hello'), '--target-dir', target];
      return runIsolated(args, { env: { BOXBUILD_CACHE_DIR: cache } }).then((result) => ({ ...result, target }));
    };
    const first = await run();
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toContain('hello: wrote /target/hello.tar.gz');
    expect(server.bytesSent('/remote/kernel')).toBe(readFileSync(join(TEST_CACHE, 'boxes/debian/x86_64/current/kernel')).length);
    const provenance = JSON.parse(readFileSync(join(first.target, 'boxbuild-provenance.json'), 'utf8'));
    expect(provenance.box).toBe('remote');
    expect(JSON.stringify(provenance.downloads)).toContain(`${server.url}/remote/kernel`);

    const before = server.hits.length;
    const second = await run();
    expect(second.exitCode).toBe(0);
    const later = server.hits.slice(before);
    expect(later.every((hit) => hit.path.endsWith('.sha256'))).toBe(true);
    expect(later.reduce((sum, hit) => sum + hit.bytes, 0)).toBeLessThan(1000);
  });
});
