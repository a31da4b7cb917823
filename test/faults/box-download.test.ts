import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Header } from 'tar';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { parseRegistry } from '../../src/box/registry.js';
import { type BoxRequest, ensureBox } from '../../src/box/resolve.js';
import { CLI } from '../helpers/env.js';
import { BoxServer } from '../box/server.js';
import { isRoot, onSmallDisk, testDir } from './box-fakes.js';

const FAST = { connectTimeoutMs: 2000, idleTimeoutMs: 400, retries: 3, minBackoffMs: 10, maxBackoffMs: 40, updateCheckTimeoutMs: 2000 };

let server: BoxServer;

const registryDoc = () => ({
  boxes: {
    tbox: {
      buildProgram: '/usr/lib/boxbuild/build',
      mirrors: [server.url],
      files: { kernel: { url: 'kernel', sha256: 'sidecar' }, initrd: { url: 'initrd', sha256: 'sidecar' } },
      arches: { x86_64: {} },
    },
  },
});

function request(cacheRoot: string, overrides: Partial<BoxRequest> = {}): BoxRequest {
  const box = parseRegistry('test-boxes.json', JSON.stringify(registryDoc()))[0]!;
  return { cacheRoot, box, arch: 'x86_64', log: () => {}, net: FAST, ...overrides };
}

function publishBox(kernelSize: number): void {
  server.publish('/kernel', randomBytes(kernelSize), true);
  server.publish('/initrd', randomBytes(4096), true);
}

const filesIn = async (dir: string) => (await readdir(dir, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => entry.name);

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
});

afterEach(() => server.close());

describe('downloads that must end', () => {
  test('a body without Content-Length is cut off at the size limit, not retried, and its partial file removed', async () => {
    const cache = testDir('bb-faults-dl-');
    publishBox(4096);
    server.endless.add('/kernel');
    await expect(ensureBox(request(cache, { net: { ...FAST, maxBytes: 1 << 20 } }))).rejects.toMatchObject({
      exitCode: 69,
      message: expect.stringMatching(/^cannot download kernel from http:\/\/127\.0\.0\.1:\d+\/kernel: larger than 1\.00 MiB, the limit for one file; BOXBUILD_MAX_DOWNLOAD raises it$/),
    });
    expect(server.hitsOf('/kernel')).toHaveLength(1);
    expect(await filesIn(join(cache, 'tmp'))).toEqual([]);
  });

  test('a file larger than the limit by its Content-Length is refused before its body is read', async () => {
    const cache = testDir('bb-faults-dl-');
    publishBox(2 << 20);
    await expect(ensureBox(request(cache, { net: { ...FAST, maxBytes: 1 << 20 } }))).rejects.toThrow(/larger than 1\.00 MiB, the limit for one file \(the server announced 2\.00 MiB\)/);
    expect(server.hitsOf('/kernel')).toHaveLength(1);
  });

  test('a redirect to file: is refused once, not retried', async () => {
    const cache = testDir('bb-faults-dl-');
    publishBox(4096);
    server.redirects.set('/kernel', 'file:///etc/passwd');
    await expect(ensureBox(request(cache))).rejects.toMatchObject({ exitCode: 69, message: expect.stringMatching(/^cannot download kernel from .*: Unsupported protocol: file:/) });
    expect(server.hitsOf('/kernel')).toHaveLength(1);
  });

  test('a server trickling a byte at a time is given up on when a window passes below the minimum rate', async () => {
    const cache = testDir('bb-faults-dl-');
    publishBox(4096);
    server.trickles.set('/kernel', 50);
    const net = { ...FAST, retries: 1, minRate: 100, slowWindowMs: 500 };
    await expect(ensureBox(request(cache, { net }))).rejects.toThrow(/^cannot download kernel from .*: too slow: \d+ B in 0\.5 s, less than 100 B\/s \(BOXBUILD_MIN_RATE\)$/);
    expect(server.hitsOf('/kernel')).toHaveLength(2); // retried once, resuming
    expect(server.hitsOf('/kernel')[1]!.range).toMatch(/^bytes=\d+-$/);
  });
});

/** A gzipped kernel tarball whose kernel is `kernelBytes` zeros (a multiple of 1 MiB): a few hundred KiB that unpack to all of it. */
async function zeroTarball(kernelBytes: number): Promise<Buffer> {
  const header = Buffer.alloc(512);
  new Header({ path: 'Box.kernel', type: 'File', size: kernelBytes, mode: 0o644, mtime: new Date(0) }).encode(header, 0);
  const zeros = Buffer.alloc(1 << 20);
  const compressed: Buffer[] = [];
  await pipeline(
    async function* () {
      yield header;
      for (let left = kernelBytes; left > 0; left -= zeros.length) yield zeros;
      yield Buffer.alloc(1024);
    },
    createGzip(),
    async (gzipped: AsyncIterable<Buffer>) => {
      for await (const chunk of gzipped) compressed.push(chunk);
    },
  );
  return Buffer.concat(compressed);
}

describe('unpacked sizes', () => {
  const tarballBox = (memoryMiB: number) =>
    parseRegistry('test-boxes.json', JSON.stringify({ boxes: { kbox: { buildProgram: '/b', memoryMiB, mirrors: [server.url], files: { kernelTarball: { url: 'Box-Kernel.tar.gz', sha256: 'sidecar' } }, arches: { x86_64: {} } } } }))[0]!;

  test.each([
    [1024, 300, String.raw`unpacks to more than 256\.0 MiB, the most a tarball of \d+\.\d KiB may unpack to \(16 times its size, at least 256\.0 MiB\)`],
    [128, 200, String.raw`unpacks to more than 128\.0 MiB, the box's memory, which its kernel and initrd are loaded into`],
  ])('a box of %i MiB whose kernel tarball unpacks to %i MiB is refused; nothing is left', async (memoryMiB, unpackedMiB, why) => {
    const cache = testDir('bb-faults-unpack-');
    server.publish('/Box-Kernel.tar.gz', await zeroTarball(unpackedMiB << 20), true);
    await expect(ensureBox(request(cache, { box: tarballBox(memoryMiB) }))).rejects.toMatchObject({
      exitCode: 69,
      message: expect.stringMatching(new RegExp(`^kernel tarball Box-Kernel\\.tar\\.gz ${why}; it was refused$`)),
    });
    expect(await filesIn(join(cache, 'tmp'))).toEqual([]);
    expect(await readdir(cache)).toEqual(['locks', 'tmp']);
  });
});

describe('small files that must end', () => {
  const withList = () =>
    parseRegistry('test-boxes.json', JSON.stringify({ boxes: { tbox: { ...registryDoc().boxes.tbox, files: { ...registryDoc().boxes.tbox.files, packages: { url: 'packages.json' } } } } }))[0]!;

  test.each([
    ['checksum file', '/kernel.sha256', '64.0 KiB', false],
    ['package list', '/packages.json', '4.00 MiB', true],
  ])('an endless %s is cut off at its limit (%s is at most %s), not retried; nothing is installed', { timeout: 20_000 }, async (what, path, limit, listed) => {
    const cache = testDir('bb-faults-small-');
    publishBox(4096);
    server.publish('/packages.json', '["kernel-1"]');
    server.endless.add(path);
    const url = `${server.url}${path}`;
    await expect(ensureBox(request(cache, listed ? { box: withList() } : {}))).rejects.toMatchObject({
      exitCode: 69,
      message: expect.stringContaining(`: ${what} ${url} is larger than ${limit}, the most a ${what} may be`),
    });
    expect(server.hitsOf(path)).toHaveLength(1);
    expect(server.bytesSent(path)).toBeLessThan(16 << 20);
    expect(await filesIn(join(cache, 'tmp'))).toEqual([]);
  });

  test('a trickling checksum file is given up when its time is up, retries included', async () => {
    const cache = testDir('bb-faults-small-');
    publishBox(4096);
    server.trickles.set('/kernel.sha256', 100); // 80 bytes: 8 s, a byte long before each idle timeout
    const started = Date.now();
    await expect(ensureBox(request(cache, { net: { ...FAST, smallFileTimeoutMs: 500 } }))).rejects.toMatchObject({
      exitCode: 69,
      message: `cannot download kernel from ${server.url}/kernel: checksum file ${server.url}/kernel.sha256 did not arrive within 0.5 s, the longest a checksum file may take`,
    });
    expect(Date.now() - started).toBeLessThan(4000); // far from the 8 s the file would take, whatever the load
    expect(server.hitsOf('/kernel.sha256')).toHaveLength(1);
  });

  test('a cached box whose checksum file became endless: the update check stops at 64 KiB, says so, and the cached box is used', async () => {
    const cache = testDir('bb-faults-small-');
    const logged: string[] = [];
    publishBox(4096);
    const installed = await ensureBox(request(cache));
    server.endless.add('/kernel.sha256');
    const started = Date.now();
    expect(await ensureBox(request(cache, { log: (line) => logged.push(line) }))).toEqual(installed);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(server.bytesSent('/kernel.sha256')).toBeLessThan(16 << 20);
    expect(logged).toEqual([expect.stringMatching(/^warning: cannot update box tbox \(x86_64\) \(checksum file \S+\/kernel\.sha256 is larger than 64\.0 KiB, the most a checksum file may be\); using the cached version /)]);
  });
});

describe('a full disk', () => {
  test.skipIf(!isRoot)('an update that does not fit falls back to the cached box; box update says so in one line (exit 69); nothing is left behind', async () => {
    const dir = testDir('bb-faults-enospc-');
    const seed = join(dir, 'seed');
    publishBox(64 << 10);
    await ensureBox(request(seed));
    publishBox(2 << 20); // the new version does not fit into the 1 MiB cache below
    const registry = join(dir, 'boxes.json');
    await writeFile(registry, JSON.stringify(registryDoc()));
    const cache = join(dir, 'cache');
    const cli = `BOXBUILD_CACHE_DIR="${cache}" "${process.execPath}" "${CLI}"`;
    const sections = await onSmallDisk(
      cache,
      '1M',
      `cp -a "${seed}/." "${cache}/"
echo "== fetch"; ${cli} box fetch tbox --boxes "${registry}" 2>&1 || echo "status $?"
echo "== update"; ${cli} box update tbox --boxes "${registry}" 2>&1 || echo "status $?"
echo "== leftovers"; find "${cache}/tmp" -mindepth 1 -not -type d; find "${cache}/tmp" -mindepth 1 -name 'staging-*'
echo "== again"; ${cli} box fetch tbox --no-update-check --boxes "${registry}" 2>&1 || echo "status $?"
`,
    );
    const installed = join(cache, 'boxes', 'tbox', 'x86_64');
    const warning = String.raw`boxbuild: warning: cannot update box tbox \(x86_64\) \(cannot download kernel \(2\.00 MiB\): no space left on device in \S+\); using the cached version .*`;
    expect(sections.fetch).toMatch(new RegExp(String.raw`^boxbuild: box tbox \(x86_64\) has a new version; downloading it\n(boxbuild: downloading kernel .*\n)?${warning}\n${installed}/\w+$`));
    expect(sections.update).toMatch(/^(boxbuild: downloading kernel .*\n)?boxbuild: error: cannot download kernel \(2\.00 MiB\): no space left on device in \S+\nstatus 69$/);
    expect(sections.leftovers).toBe('');
    expect(sections.again).toMatch(new RegExp(`^${installed}/\\w+$`));
  });
});
