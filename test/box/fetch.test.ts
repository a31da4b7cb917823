import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type IncomingMessage, createServer } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { boxTmpDir, readInstalled } from '../../src/box/cache.js';
import { pruneCache, verifyBox } from '../../src/box/manage.js';
import { parseRegistry } from '../../src/box/registry.js';
import { type BoxRequest, ensureBox, updateBox } from '../../src/box/resolve.js';
import { BoxServer } from './server.js';

const FAST = { connectTimeoutMs: 2000, idleTimeoutMs: 400, retries: 3, minBackoffMs: 10, maxBackoffMs: 40, updateCheckTimeoutMs: 2000 };

let server: BoxServer;
let cacheRoot: string;
let logged: string[];

/** A box of three files on the test server: kernel and initrd with sidecars, and a package list. */
function testBox(files: object = {}) {
  const doc = {
    boxes: {
      tbox: {
        buildProgram: '/usr/lib/boxbuild/build',
        mirrors: [server.url],
        files: { packages: { url: 'packages.json' }, kernel: { url: 'kernel', sha256: 'sidecar' }, initrd: { url: 'initrd', sha256: 'sidecar' }, ...files },
        arches: { x86_64: {} },
      },
    },
  };
  return parseRegistry('test-boxes.json', JSON.stringify(doc))[0]!;
}

function request(overrides: Partial<BoxRequest> = {}): BoxRequest {
  return { cacheRoot, box: testBox(), arch: 'x86_64', log: (line) => logged.push(line), net: FAST, ...overrides };
}

function publishBox(tag: string, kernelSize = 256 * 1024): { kernel: Buffer; initrd: Buffer } {
  const kernel = server.publish('/kernel', randomBytes(kernelSize), true);
  const initrd = server.publish('/initrd', randomBytes(4096), true);
  server.publish('/packages.json', JSON.stringify({ packages: [`kernel-${tag}`] }));
  return { kernel, initrd };
}

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
  cacheRoot = await mkdtemp(join(tmpdir(), 'boxbuild-fetch-'));
  logged = [];
});

afterEach(async () => {
  await server.close();
  await rm(cacheRoot, { recursive: true, force: true });
});

describe('remote boxes', () => {
  test('a box is downloaded, verified and installed with its manifest', async () => {
    const { kernel, initrd } = publishBox('1');
    const installed = await ensureBox(request());
    expect(await readFile(join(installed.dir, installed.manifest.files.kernel.name))).toEqual(kernel);
    expect(await readFile(join(installed.dir, installed.manifest.files.initrd.name))).toEqual(initrd);
    expect(installed.manifest.files.packages?.name).toBe('packages.json');
    expect(installed.manifest.downloads?.kernel?.url).toBe(`${server.url}/kernel`);
    expect(installed.manifest.probes?.map((probe) => probe.url)).toEqual([`${server.url}/packages.json`]);
    expect(await readInstalled(cacheRoot, 'tbox', 'x86_64')).toEqual(installed);
    expect(await readdir(join(cacheRoot, 'tmp', 'tbox', 'x86_64'))).toEqual([]);
  });

  test('a download cut in the middle is resumed by the next run, not started over', async () => {
    const { kernel } = publishBox('1', 1024 * 1024);
    server.cuts.set('/kernel', 400 * 1024);
    await expect(ensureBox(request({ net: { ...FAST, retries: 0 } }))).rejects.toThrow(/cannot download kernel from .*\/kernel/);
    expect(await readInstalled(cacheRoot, 'tbox', 'x86_64')).toBeUndefined();

    const installed = await ensureBox(request());
    expect(await readFile(join(installed.dir, 'kernel'))).toEqual(kernel);
    const hits = server.hitsOf('/kernel');
    expect(hits.map((hit) => [hit.status, hit.range])).toEqual([
      [200, undefined],
      [206, `bytes=${400 * 1024}-`],
    ]);
    expect(server.bytesSent('/kernel')).toBe(kernel.length);
  });

  test('retries within one run resume too', async () => {
    const { kernel } = publishBox('1', 1024 * 1024);
    server.cuts.set('/kernel', 300 * 1024);
    await ensureBox(request());
    expect(server.hitsOf('/kernel').map((hit) => hit.status)).toEqual([200, 206]);
    expect(server.bytesSent('/kernel')).toBe(kernel.length);
    expect(logged.some((line) => line.startsWith('kernel: ') && line.includes('trying again'))).toBe(true);
  });

  test('a file that does not match its checksum is refused; the old version stays intact', async () => {
    publishBox('1');
    const old = await ensureBox(request());
    const { kernel } = publishBox('2');
    kernel[1000]! ^= 0xff; // the server now serves a flipped byte; the sidecar has the true sum
    const error = await updateBox(request()).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).toMatch(/cannot download kernel from .*\/kernel: its sha256 is [0-9a-f]{64}, but [0-9a-f]{64} was expected/);
    expect(await readInstalled(cacheRoot, 'tbox', 'x86_64')).toEqual(old);
    expect(await verifyBox(old)).toEqual([]);
    expect((await readdir(join(cacheRoot, 'tmp', 'tbox', 'x86_64'))).filter((name) => name.endsWith('.part'))).toEqual([]);
  });

  test('404 fails at once with a clear error, without retries', async () => {
    publishBox('1');
    const box = testBox({ initrd: { url: 'missing-initrd', sha256: 'a'.repeat(64) } });
    await expect(ensureBox(request({ box }))).rejects.toThrow(`cannot download missing-initrd from ${server.url}/missing-initrd: HTTP 404 Not Found`);
    expect(server.hitsOf('/missing-initrd')).toHaveLength(1);
  });

  test('503 twice, then 200: the download succeeds', async () => {
    const { kernel } = publishBox('1');
    server.failures.set('/kernel', [503, 503]);
    const installed = await ensureBox(request());
    expect(await readFile(join(installed.dir, 'kernel'))).toEqual(kernel);
    expect(server.hitsOf('/kernel').map((hit) => hit.status)).toEqual([503, 503, 200]);
  });

  test('a mirror that fails is skipped for the next one', async () => {
    const { kernel } = publishBox('1');
    const box = testBox({ kernel: { url: [`${server.url}/gone/kernel`, `${server.url}/kernel`], sha256: 'sidecar' } });
    const installed = await ensureBox(request({ box }));
    expect(await readFile(join(installed.dir, 'kernel'))).toEqual(kernel);
    expect(server.hitsOf('/gone/kernel.sha256')).toHaveLength(1);
  });

  test('a server that stalls makes a timeout error', async () => {
    publishBox('1');
    server.stalls.add('/kernel');
    await expect(ensureBox(request({ net: { ...FAST, retries: 1 } }))).rejects.toThrow(/cannot download kernel from .*: timed out \(no data for 0.4 s\)/);
    expect(server.hitsOf('/kernel')).toHaveLength(2);
  });

  test('Ctrl-C stops a download with an "interrupted" error, not retried nor said to be; the next run resumes it', async () => {
    const { kernel } = publishBox('1', 1024 * 1024);
    server.stalls.add('/kernel');
    const controller = new AbortController();
    const fetching = ensureBox(request({ signal: controller.signal, net: { ...FAST, idleTimeoutMs: 10_000 } }));
    // Ctrl-C once the stalled download's first bytes are in its partial file.
    const partial = join(boxTmpDir(cacheRoot, 'tbox', 'x86_64'), `${createHash('sha256').update(kernel).digest('hex')}.part`);
    await vi.waitFor(async () => expect((await stat(partial)).size).toBe(10));
    controller.abort('SIGINT');
    await expect(fetching).rejects.toMatchObject({
      exitCode: 130,
      message: 'interrupted; a partial download resumes where it stopped next time',
    });
    expect(logged.filter((line) => line.includes('trying again'))).toEqual([]);
    expect(server.hitsOf('/kernel')).toHaveLength(1);
    server.stalls.delete('/kernel');
    const installed = await ensureBox(request());
    expect(await readFile(join(installed.dir, 'kernel'))).toEqual(kernel);
    expect(server.hitsOf('/kernel').map((hit) => hit.range)).toEqual([undefined, 'bytes=10-']);
  });

  test('four concurrent fetches of one box download it once', async () => {
    publishBox('1', 2 * 1024 * 1024);
    const results = await Promise.all([1, 2, 3, 4].map(() => ensureBox(request())));
    expect(new Set(results.map((result) => result.dir)).size).toBe(1);
    expect(server.hitsOf('/kernel')).toHaveLength(1);
    expect(server.hitsOf('/initrd')).toHaveLength(1);
  });

  test('an update check of an unchanged box makes one small conditional request', async () => {
    publishBox('1');
    const installed = await ensureBox(request());
    const before = server.hits.length;
    expect(await updateBox(request())).toEqual(installed);
    expect(await ensureBox(request())).toEqual(installed);
    expect(server.hits.slice(before).map((hit) => [hit.path, hit.status])).toEqual([
      ['/packages.json', 304],
      ['/packages.json', 304],
    ]);
  });

  test('--no-update-check makes no request at all', async () => {
    publishBox('1');
    await ensureBox(request());
    const before = server.hits.length;
    await ensureBox(request({ updateCheck: false }));
    expect(server.hits.length).toBe(before);
  });

  test('an unreachable server leaves the cached box in use, with a one-line warning', async () => {
    publishBox('1');
    const installed = await ensureBox(request());
    await server.close();
    expect(await ensureBox(request())).toEqual(installed);
    expect(logged.filter((line) => line.startsWith('warning: cannot update box tbox (x86_64)'))).toHaveLength(1);
  });

  test('a changed box is downloaded as a new version; unchanged files are reused; prune drops the old one', async () => {
    const first = publishBox('1');
    const old = await ensureBox(request());
    const kernel = server.publish('/kernel', randomBytes(300 * 1024), true);
    server.publish('/packages.json', JSON.stringify({ packages: ['kernel-2'] }));
    const before = server.hits.length;
    const updated = await ensureBox(request());
    expect(updated.dir).not.toBe(old.dir);
    expect(await readFile(join(updated.dir, 'kernel'))).toEqual(kernel);
    expect(await readFile(join(updated.dir, 'initrd'))).toEqual(first.initrd);
    const downloaded = server.hits.slice(before).filter((hit) => !hit.path.endsWith('.sha256') && hit.path !== '/packages.json');
    expect(downloaded.map((hit) => hit.path)).toEqual(['/kernel']);
    expect((await readInstalled(cacheRoot, 'tbox', 'x86_64'))?.dir).toBe(updated.dir);

    const pruned = await pruneCache(cacheRoot);
    expect(pruned.removed).toEqual([old.dir]);
    await expect(stat(old.dir)).rejects.toThrow();
    expect(await verifyBox(updated)).toEqual([]);
  });

  test('a pinned box needs no request for its update check', async () => {
    const { kernel, initrd } = publishBox('1');
    const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    const box = parseRegistry(
      'pinned.json',
      JSON.stringify({
        boxes: {
          tbox: {
            buildProgram: '/b',
            files: { kernel: { url: `${server.url}/kernel`, sha256: sha(kernel) }, initrd: { url: `${server.url}/initrd`, sha256: sha(initrd) } },
            arches: { x86_64: {} },
          },
        },
      }),
    )[0]!;
    const installed = await ensureBox(request({ box }));
    const before = server.hits.length;
    expect(await ensureBox(request({ box }))).toEqual(installed);
    expect(server.hits.length).toBe(before);
  });

  test('HTTP_PROXY is used, except for hosts NO_PROXY names', async () => {
    // A tunnelling proxy (hpagent sends CONNECT for http and https alike).
    const proxied: string[] = [];
    const tunnels: Socket[] = [];
    const proxy = createServer();
    proxy.on('connect', (incoming: IncomingMessage, client: Socket) => {
      proxied.push(incoming.url!);
      tunnels.push(client);
      const [host, port] = incoming.url!.split(':');
      const upstream = connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.pipe(client).pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY };
    try {
      process.env.HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      process.env.NO_PROXY = 'nothing.example';
      publishBox('1');
      await ensureBox(request());
      expect(proxied.length).toBeGreaterThan(0);
      expect(new Set(proxied)).toEqual(new Set([server.url.replace('http://', '')]));

      process.env.NO_PROXY = '127.0.0.1';
      for (const tunnel of tunnels) tunnel.destroy(); // a proxied request would need a new tunnel
      await rm(cacheRoot, { recursive: true });
      const before = proxied.length;
      await ensureBox(request());
      expect(proxied).toHaveLength(before);
      expect(server.hitsOf('/kernel')).toHaveLength(2);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});
