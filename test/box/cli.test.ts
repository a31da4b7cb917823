import { createHash, randomBytes } from 'node:crypto';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { tarOf } from '../helpers/tar.js';
import { readInstalled } from '../../src/box/cache.js';
import { runCli } from '../helpers/cli.js';
import { PROVENANCE_FILE, writeProvenance } from '../../src/box/provenance.js';
import { commandLine } from '../../src/cli/program.js';
import { attachSystemDisk } from '../../src/driver/qemu/system-disk.js';
import { BoxServer } from './server.js';

let server: BoxServer;
let dir: string;
let registry: string;
let savedCache: string | undefined;


/** Publishes a box laid out like the KIWI self-contained boxes: kernel tarball, system disk, package list. */
async function publishKiwiBox(system: Buffer, packages: string[]): Promise<void> {
  const tar = tarOf({ 'Test-Box.x86_64-1.0.kernel': Buffer.from('kernel image'), 'Test-Box.x86_64-1.0.initrd': Buffer.from('initrd image') });
  server.publish('/images/Test-Box.x86_64-Kernel.tar.xz', Buffer.from((await execa('xz', ['-c'], { input: tar, encoding: 'buffer', stripFinalNewline: false })).stdout), true);
  server.publish('/images/Test-Box.x86_64-System.qcow2', system, true);
  server.publish('/images/Test-Box.x86_64-System.json', JSON.stringify(packages));
}

/** Runs boxbuild's command line in this process; returns what it printed on stdout. */
async function boxbuild(...args: string[]): Promise<string> {
  const printed: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    printed.push(String(chunk));
    return true;
  });
  try {
    await commandLine(args, new AbortController().signal);
  } finally {
    spy.mockRestore();
  }
  return printed.join('');
}

beforeEach(async () => {
  server = new BoxServer();
  await server.start();
  dir = await mkdtemp(join(tmpdir(), 'boxbuild-cli-'));
  savedCache = process.env.BOXBUILD_CACHE_DIR;
  process.env.BOXBUILD_CACHE_DIR = join(dir, 'cache');
  registry = join(dir, 'boxes.json');
  const box = {
    description: 'a box laid out like the KIWI ones',
    protocol: 'kiwi',
    console: 'hvc0',
    mirrors: [`${server.url}/images`],
    files: {
      kernelTarball: { url: 'Test-Box.{arch}-Kernel.tar.xz', sha256: 'sidecar' },
      system: { url: 'Test-Box.{arch}-System.qcow2', sha256: 'sidecar' },
      packages: { url: 'Test-Box.{arch}-System.json' },
    },
    arches: { x86_64: { cmdline: 'root=/dev/vda3' } },
  };
  await writeFile(registry, JSON.stringify({ boxes: { kbox: box } }));
});

afterEach(async () => {
  if (savedCache === undefined) delete process.env.BOXBUILD_CACHE_DIR;
  else process.env.BOXBUILD_CACHE_DIR = savedCache;
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('boxbuild box ...', () => {
  test('fetch, list, verify, update, prune and remove a KIWI-style box', async () => {
    const system = randomBytes(200_000);
    await publishKiwiBox(system, ['bash-5']);
    const fetched = (await boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q')).trim();
    expect((await readdir(fetched)).sort()).toEqual([
      'Test-Box.x86_64-1.0.initrd',
      'Test-Box.x86_64-1.0.kernel',
      'Test-Box.x86_64-System.json',
      'Test-Box.x86_64-System.qcow2',
      'box.json',
    ]);
    const installed = (await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64'))!;
    expect(installed.manifest.files.system).toEqual({ name: 'Test-Box.x86_64-System.qcow2', sha256: createHash('sha256').update(system).digest('hex'), size: system.length });
    expect(installed.manifest.files.kernel.name).toBe('Test-Box.x86_64-1.0.kernel');
    expect(await readFile(join(fetched, 'Test-Box.x86_64-1.0.initrd'), 'utf8')).toBe('initrd image');

    const listed = JSON.parse(await boxbuild('box', 'list', '--json', '--boxes', registry)) as { name: string; cached: { arch: string; status: string; size: number }[] }[];
    expect(listed.find((box) => box.name === 'kbox')!.cached).toMatchObject([{ arch: 'x86_64', status: 'current', size: 200_000 + 24 + 10 }]);
    expect(await boxbuild('box', 'list', '--boxes', registry)).toMatch(/^kbox\s+x86_64\s+download\s+x86_64\s+2025-01-0\d \d\d:\d\d\s+195\.\d KiB\s+-\s+-\s+current$/m);

    expect(await boxbuild('box', 'verify', 'kbox')).toMatch(/^kbox \(x86_64\) .*: ok$/m);

    // A new system disk is published: the update downloads it (and only it), prune drops the old version.
    const tarballHits = server.hitsOf('/images/Test-Box.x86_64-Kernel.tar.xz').length;
    await publishKiwiBox(randomBytes(100_000), ['bash-5', 'make-4']);
    const listedAgain = JSON.parse(await boxbuild('box', 'list', '--json', '--boxes', registry)) as typeof listed;
    expect(listedAgain.find((box) => box.name === 'kbox')!.cached[0]!.status).toBe('outdated');
    expect(await boxbuild('box', 'update', 'kbox', '--boxes', registry, '-q')).toMatch(/^kbox \(x86_64\) updated to .*/);
    expect(server.hitsOf('/images/Test-Box.x86_64-Kernel.tar.xz')).toHaveLength(tarballHits);
    expect(await boxbuild('box', 'update', '--all', '--boxes', registry, '-q')).toMatch(/^kbox \(x86_64\) is current /);
    // Allocated blocks of the old version's own files (its kernel and initrd are hard links of the new one's: they free nothing).
    expect(await boxbuild('box', 'prune')).toMatch(/^pruned 1 item, freed 2[01]\d\.\d KiB$/m);
    expect(await readdir(join(dir, 'cache', 'boxes', 'kbox', 'x86_64'))).toHaveLength(2); // current and its version

    const current = (await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64'))!;
    await appendFile(join(current.dir, 'Test-Box.x86_64-System.qcow2'), 'x');
    const failure = boxbuild('box', 'verify');
    await expect(failure).rejects.toThrow('some box files are damaged or do not match their manifest');
    await expect(failure).rejects.toMatchObject({ detail: expect.stringMatching(/^kbox \(x86_64\): Test-Box.x86_64-System.qcow2: sha256 is [0-9a-f]{64}, the manifest says/) });

    expect(await boxbuild('box', 'remove', 'kbox')).toBe('removed kbox (x86_64)\n');
    expect(await boxbuild('box', 'list', '--boxes', registry)).toMatch(/^kbox\s+x86_64\s+download\s+-\s+not cached$/m);
    await expect(boxbuild('box', 'remove', 'kbox')).rejects.toThrow('box "kbox" is not in the cache');
  });

  test('a system disk that names a host file is refused: on download (nothing installed), in the cache (verify, and before QEMU starts)', async () => {
    const secret = join(dir, 'secret');
    await writeFile(secret, 'SECRET\n', { mode: 0o600 });
    const evil = join(dir, 'evil.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', evil, '1M']);
    await execa('qemu-img', ['rebase', '-u', '-F', 'raw', '-b', secret, evil]);
    await publishKiwiBox(await readFile(evil), ['bash-5']);
    const url = `${server.url}/images/Test-Box.x86_64-System.qcow2`;
    const refused = `box kbox (x86_64): its system disk ${url} names another file as its backing file (${secret}); boxbuild opens only self-contained images`;
    await expect(boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q')).rejects.toMatchObject({ exitCode: 69, message: refused });
    const description = join(dir, 'description');
    await mkdir(description);
    await expect(boxbuild('--box', 'kbox', '--boxes', registry, '-q', '--', '--description', description, '--target-dir', join(dir, 'target'))).rejects.toMatchObject({ exitCode: 69, message: refused });
    expect(await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64')).toBeUndefined();

    // A box in the cache whose disk became such a file (installed before this rule, or changed there).
    await publishKiwiBox(randomBytes(1000), ['bash-5']);
    await boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q');
    const installed = (await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64'))!;
    const cached = join(installed.dir, 'Test-Box.x86_64-System.qcow2');
    await copyFile(evil, cached);
    const verified = boxbuild('box', 'verify');
    await expect(verified).rejects.toMatchObject({ exitCode: 69, detail: expect.stringContaining(`kbox (x86_64): Test-Box.x86_64-System.qcow2 names another file as its backing file (${secret})`) });
    await expect(attachSystemDisk(installed, dir, true)).rejects.toMatchObject({
      exitCode: 69,
      message: `box kbox (x86_64): its system disk ${cached} names another file as its backing file (${secret}); boxbuild opens only self-contained images`,
    });
    await expect(attachSystemDisk(installed, dir, false)).rejects.toMatchObject({ exitCode: 69 });
  });

  test('a box file deleted from the cache: a run is refused as a damaged box naming it (exit 69); box verify --json says so, --repair downloads the box afresh', async () => {
    await publishKiwiBox(randomBytes(1000), ['bash-5']);
    await boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q');
    const installed = (await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64'))!;
    const kernel = join(installed.dir, installed.manifest.files.kernel.name);
    await rm(kernel);
    const description = join(dir, 'description');
    await mkdir(description);
    await expect(boxbuild('--box', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q', '--', '--description', description, '--target-dir', join(dir, 'target'))).rejects.toMatchObject({
      exitCode: 69,
      message: `box kbox (x86_64) is damaged: ${kernel} is missing; repair it with "boxbuild box verify --repair kbox --arch x86_64"`,
    });

    const verified = await runCli(['box', 'verify', '--json'], { env: { BOXBUILD_CACHE_DIR: join(dir, 'cache') } });
    expect(verified.exitCode).toBe(69);
    expect(JSON.parse(verified.stdout)).toEqual([
      { name: 'kbox', arch: 'x86_64', version: installed.manifest.version, dir: installed.dir, ok: false, problems: ['Test-Box.x86_64-1.0.kernel: missing'] },
    ]);
    expect(verified.stderr).toMatch(/^boxbuild: error: some box files are damaged or do not match their manifest: "boxbuild box verify --repair" makes or downloads those boxes afresh\n {2}kbox \(x86_64\): Test-Box\.x86_64-1\.0\.kernel: missing$/);

    const tarballHits = server.hitsOf('/images/Test-Box.x86_64-Kernel.tar.xz').length;
    expect(await boxbuild('box', 'verify', '--repair', '--boxes', registry, '-q')).toBe(`kbox (x86_64) ${installed.manifest.version}: FAILED\nkbox (x86_64) repaired: ${installed.manifest.version}\n`);
    expect(server.hitsOf('/images/Test-Box.x86_64-Kernel.tar.xz')).toHaveLength(tarballHits + 1);
    expect(await readFile(kernel, 'utf8')).toBe('kernel image');
    expect(JSON.parse(await boxbuild('box', 'verify', '--json'))).toEqual([{ name: 'kbox', arch: 'x86_64', version: installed.manifest.version, dir: installed.dir, ok: true, problems: [] }]);
  });

  test('a registry typo stops the command with an error naming the file, box and field', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ boxes: { kbox: { protocol: 'kiwi', files: { system: { url: 'http://x/s.qcow2', sha256: 'sidecar', mirror: 'x' } }, arches: { x86_64: {} } } } }));
    await expect(boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', bad)).rejects.toThrow(`${bad}: box "kbox": unknown field "files.system.mirror" (known: url, sha256, signature)`);
  });

  test('box update needs a name or --all', async () => {
    await expect(boxbuild('box', 'update')).rejects.toThrow('box update: name a box, or give --all');
  });

  test('the provenance file records the box, its files and sources, and how it ran', async () => {
    await publishKiwiBox(randomBytes(1000), ['bash-5']);
    await boxbuild('box', 'fetch', 'kbox', '--arch', 'x86_64', '--boxes', registry, '-q');
    const installed = (await readInstalled(join(dir, 'cache'), 'kbox', 'x86_64'))!;
    const run = { argv: ['/b', 'x'], exitCode: 3, startedAt: new Date('2026-01-01T00:00:00Z'), endedAt: new Date('2026-01-01T00:01:30.5Z'), warm: true };
    const path = await writeProvenance(dir, { installed, accelerator: 'tcg', sharing: '9p' }, run);
    expect(path).toBe(join(dir, PROVENANCE_FILE));
    const provenance = JSON.parse(await readFile(path, 'utf8'));
    expect(provenance).toMatchObject({
      boxbuild: expect.stringMatching(/^\d+\.\d+\.\d+/),
      box: 'kbox',
      arch: 'x86_64',
      version: installed.manifest.version,
      files: installed.manifest.files,
      sources: { kernelTarball: `${server.url}/images/Test-Box.x86_64-Kernel.tar.xz`, system: `${server.url}/images/Test-Box.x86_64-System.qcow2` },
      downloads: { kernelTarball: { sha256: installed.manifest.downloads!.kernelTarball!.sha256 } },
      accelerator: 'tcg',
      sharing: '9p',
      argv: ['/b', 'x'],
      exitCode: 3,
      warm: true,
      startedAt: '2026-01-01T00:00:00.000Z',
      endedAt: '2026-01-01T00:01:30.500Z',
      durationSeconds: 90.5,
    });
  });
});
