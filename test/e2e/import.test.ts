import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { bootableImage } from '../helpers/images.js';
import { LAYERED_CHECK, busyboxRoot, layeredImage, rootTarball } from '../helpers/rootfs.js';
import { tempDir } from '../helpers/temp.js';

/*
 * box import with real files made here: a busybox root file system as a directory and a tarball,
 * an OCI image in two layers (whiteouts, an opaque directory) as a layout written to the spec and as
 * the OCI and Docker archives skopeo makes of it, and a Vagrant box around a bootable qcow2. Each
 * becomes a box that runs builds; the imported boxes get names of this run and are removed after.
 */

const RUN = randomBytes(3).toString('hex');
/** An import boots a VM that prepares the disk, then the box boots: minutes under TCG beside a kiwi build. */
const IMPORT_TIMEOUT = 300_000;
const name = (what: string) => `t-${what}-${RUN}`;
const imported: string[] = [];

const boxbuild = (args: string[]) => runIsolated(args, { env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });

async function importBox(box: string, source: string, ...options: string[]) {
  const result = await boxbuild(['box', 'import', box, source, ...options]);
  if (result.exitCode === 0) imported.push(box);
  return result;
}

/** Makes a box version look imported by another boxbuild (its guest files' digest). */
function outdate(version: string): void {
  const manifest = JSON.parse(readFileSync(join(version, 'box.json'), 'utf8')) as { sources: Record<string, string> };
  manifest.sources['boxbuild-guest'] = 'another boxbuild';
  writeFileSync(join(version, 'box.json'), JSON.stringify(manifest));
}

/** The version directory of an imported box. */
const versionOf = async (box: string) => (await boxbuild(['box', 'fetch', box, '--no-update-check', '-q'])).stdout.trim();

afterAll(async () => {
  for (const box of imported) await boxbuild(['box', 'remove', box, '-q']);
});

describe('box import: root file systems', { timeout: IMPORT_TIMEOUT }, () => {
  let root: string;
  let tarball: string;
  beforeAll(async () => {
    const dir = tempDir();
    root = await busyboxRoot(join(dir, 'root'), 'x86_64');
    tarball = await rootTarball(root, join(dir, 'root.tar.xz'), '-J');
  });

  test('a tarball becomes a box: owners and set-id bits kept, builds over 9p and virtiofs, booted then restored', async () => {
    const box = name('tarball');
    const result = await importBox(box, tarball);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(new RegExp(`imported ${box} \\(x86_64\\) from tarball `));
    const check = await boxbuild(['exec', '--box', box, '--sharing', '9p', '--', 'sh', '-c', 'cat /etc/os-release; stat -c "%u:%g %a" /owned /setuid; uname -m']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(check.stdout).toBe('ID=boxbuild-test\nNAME="boxbuild test root"\n1234:1234 644\n0:0 4755\nx86_64');
    for (const sharing of ['9p', 'virtiofs']) {
      const target = join(tempDir(), 'out');
      const build = await boxbuild(['--box', box, '--sharing', sharing, '-v', '--', '--description', join(REPO, 'examples/hello'), '--target-dir', target, 'extra']);
      expect(build.exitCode, build.stderr).toBe(0);
      expect(build.stdout).toContain('hello: extra arguments: extra');
      expect(readFileSync(join(target, 'hello/message.txt'), 'utf8')).toBe(readFileSync(join(REPO, 'examples/hello/message.txt'), 'utf8'));
      expect(readFileSync(join(target, 'hello/built-on.txt'), 'utf8')).toMatch(/x86_64/);
    }
    const warm = await boxbuild(['exec', '--box', box, '-v', '--', 'cat', '/owned']);
    expect(warm.stdout).toBe('owned by 1234');
    expect(warm.stderr).toContain('guest agent ready (restored)');
    const listed = JSON.parse((await boxbuild(['box', 'list', '--json', '--no-update-check'])).stdout) as { name: string; description: string; source: string; cached: { arch: string; version: string }[] }[];
    const entry = listed.find((item) => item.name === box)!;
    expect(entry.description).toBe(`imported from ${tarball} (tarball)`);
    expect(entry.source).toBe('imported');
    expect(entry.cached.map((variant) => variant.arch)).toEqual(['x86_64']);
    const verify = await boxbuild(['box', 'verify', box]);
    expect(verify.exitCode, verify.stderr).toBe(0);
  });

  test('exec --image TARBALL: a one-off run in the root file system, nothing kept in the cache', async () => {
    const boxes = readdirSync(join(TEST_CACHE, 'boxes')).sort();
    const run = await boxbuild(['exec', '--image', tarball, '--sharing', 'virtiofs', '--share', `${root}:/from-host:ro`, '--', 'sh', '-c', 'cat /etc/os-release /from-host/owned; stat -c %a /setuid']);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toBe('ID=boxbuild-test\nNAME="boxbuild test root"\nowned by 1234\n4755');
    expect(readdirSync(join(TEST_CACHE, 'boxes')).sort()).toEqual(boxes);
  });

  test('a directory: a re-import of the same bytes is the same version, of changed bytes a new one', async () => {
    const box = name('dir');
    expect((await importBox(box, root)).exitCode).toBe(0);
    const first = await versionOf(box);
    expect((await importBox(box, root)).exitCode).toBe(0);
    expect(await versionOf(box)).toBe(first);
    writeFileSync(join(root, 'etc/changed'), 'changed\n');
    expect((await importBox(box, root)).exitCode).toBe(0);
    expect(await versionOf(box)).not.toBe(first);
    expect((await boxbuild(['exec', '--box', box, '--', 'cat', '/etc/changed'])).stdout).toBe('changed');
    // Imported by another boxbuild (other guest files): made current from the cache, the disk kept.
    outdate(await versionOf(box));
    const refreshed = await boxbuild(['exec', '--box', box, '--', 'cat', '/etc/changed']);
    expect(refreshed.stdout, refreshed.stderr).toBe('changed');
    expect(refreshed.stderr).toContain('was made by another boxbuild version; making it again');
  });
});

describe('box import: OCI and Docker images', { timeout: IMPORT_TIMEOUT }, () => {
  let layout: string;
  beforeAll(async () => {
    layout = await layeredImage(tempDir());
  });
  const script = LAYERED_CHECK;

  test('an OCI layout: layers applied in order, whiteouts and the opaque directory honoured; a build over 9p', async () => {
    const box = name('oci');
    const result = await importBox(box, layout);
    expect(result.exitCode, result.stderr).toBe(0);
    const run = await boxbuild(['exec', '--box', box, '--sharing', '9p', '--', 'sh', '-c', script]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toBe('new\nadded\n0');
  });
});

describe('box import: disk images', { timeout: IMPORT_TIMEOUT }, () => {
  test('a Vagrant box (libvirt) around a qcow2 boots its own kernel (aarch64, told by the kernel), cold and warm', async () => {
    const dir = tempDir();
    const image = await bootableImage(dir, 'vagrant');
    const boxDir = join(dir, 'box');
    mkdirSync(boxDir);
    await execa('cp', [image, join(boxDir, 'box.img')]);
    writeFileSync(join(boxDir, 'metadata.json'), JSON.stringify({ provider: 'libvirt', format: 'qcow2', virtual_size: 1 }));
    writeFileSync(join(boxDir, 'Vagrantfile'), 'Vagrant.configure("2") do |config| end\n');
    const vagrant = join(dir, 'test.box');
    await execa('tar', ['-czf', vagrant, '-C', boxDir, 'metadata.json', 'Vagrantfile', 'box.img']);
    const box = name('vagrant');
    const result = await importBox(box, vagrant);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(new RegExp(`imported ${box} \\(aarch64\\) from Vagrant box `));
    for (const warm of [false, true]) {
      const run = await boxbuild(['exec', '--box', box, '-v', '--', 'uname', '-m']);
      expect(run.stdout, run.stderr).toBe('aarch64');
      if (warm) expect(run.stderr).toContain('guest agent ready (restored)');
    }
    // Imported by another boxbuild: the copy of the disk gets this boxbuild's init and agent.
    outdate(await versionOf(box));
    const refreshed = await boxbuild(['exec', '--box', box, '--', 'uname', '-m']);
    expect(refreshed.stdout, refreshed.stderr).toBe('aarch64');
    expect(refreshed.stderr).toContain('was made by another boxbuild version; making it again');
  });
});

describe('box import: disk images without a kernel', { timeout: IMPORT_TIMEOUT }, () => {
  test('are refused without --kernel (one line, exit 69), and boot the kernel and initrd given with --kernel and --initrd', async () => {
    const dir = tempDir();
    const image = await bootableImage(dir, 'bare', '', 'ext4', false);
    const box = name('bare');
    const refused = await importBox(box, image);
    expect(refused.exitCode).toBe(69);
    expect(refused.stderr.trim().split('\n').at(-1)).toMatch(/^boxbuild: error: .*the image has no kernel/);
    const kernel = join(TEST_CACHE, 'boxes/debian/aarch64/current');
    const result = await importBox(box, image, '--kernel', join(kernel, 'kernel'), '--initrd', join(kernel, 'initrd'));
    expect(result.exitCode, result.stderr).toBe(0);
    const run = await boxbuild(['exec', '--box', box, '--', 'uname', '-m']);
    expect(run.stdout, run.stderr).toBe('aarch64');
  });
});

describe('box import: bad input', { timeout: IMPORT_TIMEOUT }, () => {
  test('an unknown format, a missing file, a layer that climbs out with ../, a box name of the registry: one line each, and the cache as it was', async () => {
    const dir = tempDir();
    const boxes = () => readdirSync(join(TEST_CACHE, 'boxes')).sort();
    const before = boxes();
    writeFileSync(join(dir, 'notes.txt'), 'not an image\n');
    const climbing = join(dir, 'climbing.tar');
    mkdirSync(join(dir, 'c/etc'), { recursive: true });
    writeFileSync(join(dir, 'c/etc/passwd'), 'x\n');
    await execa('tar', ['-cf', climbing, '-C', join(dir, 'c'), '--transform', 's,^etc,../../etc,', 'etc/passwd']);
    const cases: [string, string, number, RegExp][] = [
      [name('unknown'), join(dir, 'notes.txt'), 2, /unknown image format/],
      [name('missing'), join(dir, 'nothing-here.tar'), 2, /nothing-here\.tar/],
      [name('climbing'), climbing, 69, /\.\./],
      ['debian', climbing, 2, /there is a box "debian" in .*boxes\.json: choose another name/],
    ];
    for (const [box, source, code, message] of cases) {
      const result = await importBox(box, source);
      expect(result.exitCode, `${box}: ${result.stderr}`).toBe(code);
      const lines = result.stderr.trim().split('\n');
      expect(lines.at(-1), result.stderr).toMatch(/^boxbuild: error: /);
      expect(lines.at(-1)).toMatch(message);
    }
    expect(boxes()).toEqual(before);
    expect(existsSync(join(TEST_CACHE, 'imported', `${name('climbing')}.json`))).toBe(false);
  });
});
