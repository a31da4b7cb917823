import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { runCli } from '../helpers/cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { type RegistryProxy, startRegistryProxy } from '../helpers/registry-proxy.js';
import { type TestRegistry, startRegistry } from '../helpers/registry.js';
import { tempDir } from '../helpers/temp.js';

/** The debian box pushed to a real registry on 127.0.0.1 and pulled into an empty cache: builds run in it, cold and warm. */
describe('the debian box through an OCI registry', () => {
  let registry: TestRegistry;
  let proxy: RegistryProxy;
  let boxes: string;
  let cache: string;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startRegistryProxy(registry);
    const dir = tempDir();
    boxes = join(dir, 'boxes.json');
    cache = join(dir, 'cache');
    const debian = JSON.parse(readFileSync(join(REPO, 'boxes.json'), 'utf8')).boxes.debian;
    // The entry as a team writes it: the shipped one, pulled instead of made.
    const { make: _made, ...pulled } = debian;
    writeFileSync(boxes, JSON.stringify({ boxes: { debian: { ...pulled, oci: `${proxy.host}/boxes/debian:stable` } } }));
  }, 60_000);

  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  test('box push, then builds in a fresh cache: the first pulls the box, cold; the next restores warm after one HEAD', async () => {
    const pushed = await runCli(['box', 'push', 'debian:x86_64', `${registry.host}/boxes/debian:stable`]);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const run = () => {
      const target = join(tempDir(), 'out');
      const args = ['--boxes', boxes, '--box', 'debian', '--arch', 'x86_64', '--accel', 'tcg', '-v', '--', '--description', join(REPO, 'examples/hello'), '--target-dir', target];
      return runIsolated(args, { env: { BOXBUILD_CACHE_DIR: cache } }).then((result) => ({ ...result, target }));
    };
    const first = await run();
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toContain('hello: wrote /target/hello.tar.gz');
    expect(first.stderr).toMatch(/downloaded kernel/);
    expect(first.stderr).not.toMatch(/restored/);
    const kernel = readFileSync(join(TEST_CACHE, 'boxes/debian/x86_64/current/kernel'));
    expect(readFileSync(join(cache, 'boxes/debian/x86_64/current/kernel')).equals(kernel)).toBe(true);
    const provenance = JSON.parse(readFileSync(join(first.target, 'boxbuild-provenance.json'), 'utf8'));
    expect(JSON.stringify(provenance)).toMatch(new RegExp(`${proxy.host}/boxes/debian:stable@sha256:[0-9a-f]{64}`));

    proxy.requests.length = 0;
    const second = await run();
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/guest agent ready \(restored\)/);
    expect(proxy.requests.map(({ method, path }) => `${method} ${path}`)).toEqual(['HEAD /v2/boxes/debian/manifests/stable']);
  });
});
