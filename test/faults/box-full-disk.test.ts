import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { tarOf } from '../helpers/tar.js';
import { parseRegistry } from '../../src/box/registry.js';
import { ensureBox } from '../../src/box/resolve.js';
import { CLI } from '../helpers/env.js';
import { processesMentioning } from '../helpers/temp.js';
import { BoxServer } from '../box/server.js';
import { isRoot, onSmallDisk, testDir } from './box-fakes.js';

/*
 * A cache whose disk is full: every box command ends on its own with one line (none waits for ever
 * on its own lock helper), `box prune` frees the disk, and a kernel tarball that does not fit leaves
 * nothing behind. Each command runs under `timeout`, so that a hang fails the test instead of
 * stalling it.
 */

let server: BoxServer;

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
});

afterEach(() => server.close());

const registryDoc = () => ({
  boxes: {
    tbox: { buildProgram: '/b', mirrors: [server.url], files: { kernel: { url: 'kernel', sha256: 'sidecar' }, initrd: { url: 'initrd', sha256: 'sidecar' } }, arches: { x86_64: {} } },
    kbox: { buildProgram: '/b', mirrors: [server.url], files: { kernelTarball: { url: 'Box-Kernel.tar.gz', sha256: 'sidecar' } }, arches: { x86_64: {} } },
  },
});


async function setUp() {
  const dir = testDir('bb-faults-full-');
  const registry = join(dir, 'boxes.json');
  await writeFile(registry, JSON.stringify(registryDoc()));
  const cache = join(dir, 'cache');
  const cli = `BOXBUILD_CACHE_DIR="${cache}" timeout -s KILL 20 "${process.execPath}" "${CLI}"`;
  return { dir, registry, cache, cli };
}

test.skipIf(!isRoot)('on a full cache, box fetch, update and remove end on their own; box prune frees the disk', async () => {
  const { dir, registry, cache, cli } = await setUp();
  const seed = join(dir, 'seed');
  server.publish('/kernel', randomBytes(64 << 10), true);
  server.publish('/initrd', randomBytes(4096), true);
  const box = parseRegistry('test-boxes.json', JSON.stringify(registryDoc()))[0]!;
  await ensureBox({ cacheRoot: seed, box, arch: 'x86_64', log: () => {} });
  server.publish('/kernel', randomBytes(128 << 10), true); // a new version, which takes the lock to download
  const fill = (name: string) => `mkdir -p "${cache}/logs"; dd if=/dev/zero of="${cache}/logs/${name}.log" bs=4k 2>/dev/null || true`;
  const sections = await onSmallDisk(
    cache,
    '1M',
    `cp -a "${seed}/." "${cache}/"
${fill('a')}
echo "== fetch"; ${cli} box fetch tbox --boxes "${registry}" 2>&1 || echo "status $?"
echo "== update"; ${cli} box update tbox --boxes "${registry}" -q 2>&1 || echo "status $?"
echo "== remove"; ${cli} box remove tbox 2>&1 || echo "status $?"
cp -a "${seed}/." "${cache}/" 2>/dev/null || true; ${fill('b')}
echo "== dry run"; ${cli} box prune --dry-run 2>&1 || echo "status $?"
echo "== prune"; ${cli} box prune 2>&1 || echo "status $?"
echo "== free"; df --output=avail -k "${cache}" | tail -1
`,
  );
  const installed = join(cache, 'boxes', 'tbox', 'x86_64');
  expect(sections.fetch).toMatch(new RegExp(String.raw`^(boxbuild: (?!warning).*\n)*boxbuild: warning: cannot update box tbox \(x86_64\) \(.*no space left on device.*\); using the cached version .*\n${installed}/\w+$`));
  expect(sections.update).toMatch(/^boxbuild: error: .*no space left on device.*\nstatus 69$/);
  expect(sections.remove).toBe('removed tbox (x86_64)');
  const size = String.raw`\d+(\.\d+)? (B|KiB)`;
  expect(sections['dry run']).toMatch(new RegExp(`^would remove ${cache}/logs/a\\.log \\(${size}\\)\nwould remove ${cache}/logs/b\\.log \\(${size}\\)\nwould prune 2 items, freeing ${size}$`));
  expect(sections.prune).toMatch(/^pruned 2 items, freed \d+\.\d+ KiB$/);
  expect(Number(sections.free)).toBeGreaterThan(512);
  expect(processesMentioning(cache)).toEqual([]);
});

test.skipIf(!isRoot)('a kernel tarball that does not fit on the disk: one line, exit 69, no staging directory and no partial file left', async () => {
  const { registry, cache, cli } = await setUp();
  // Random bytes do not compress: the 600 KiB download fits into the 1 MiB cache, its unpacked copy does not.
  server.publish('/Box-Kernel.tar.gz', gzipSync(tarOf({ 'Box.kernel': randomBytes(400 << 10), 'Box.initrd': randomBytes(200 << 10) })), true);
  const sections = await onSmallDisk(
    cache,
    '1M',
    `echo "== fetch"; ${cli} box fetch kbox --arch x86_64 --boxes "${registry}" -q 2>&1 || echo "status $?"
echo "== left"; find "${cache}/tmp" "${cache}/boxes" -mindepth 1 -not -type d 2>/dev/null || true; find "${cache}/tmp" -mindepth 1 -name 'staging-*'
`,
  );
  expect(sections.fetch).toMatch(new RegExp(`^boxbuild: error: cannot unpack kernel tarball Box-Kernel\\.tar\\.gz: no space left on device in ${cache}/tmp/kbox/x86_64\nstatus 69$`));
  expect(sections.left).toBe('');
});
