import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, test } from 'vitest';
import { fetchTestBox } from '../helpers/boxes.js';
import { runIsolated } from '../helpers/box-cli.js';
import { REPO, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';

/*
 * The slow tier (npm run test:images): real image builds that take too long for the default tier
 * under emulation. Each test makes the debian-kiwi box of its architecture once per test cache.
 */

const EXAMPLE = join(REPO, 'examples/debian-kiwi');
const env = { BOXBUILD_CACHE_DIR: TEST_CACHE };
const HOUR = 3_600_000;

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, offset);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

async function build(arch: string, type: string): Promise<string> {
  await fetchTestBox('debian-kiwi', arch);
  const target = join(tempDir(), `out-${type}`);
  const result = await runIsolated(['--box', 'debian-kiwi', '--arch', arch, '--type', type, '-q', '--', '--description', EXAMPLE, '--target-dir', target], { env });
  expect(result.exitCode, result.stdout.slice(-3000)).toBe(0);
  return target;
}

describe('x86_64 images', () => {
  test('the EFI oem disk boots with exec --image, as qcow2, as raw, and its root in an MBR (BIOS) layout', { timeout: 2 * HOUR }, async () => {
    const target = await build('x86_64', 'oem');
    const qcow2 = join(target, readdirSync(target).find((name) => name.endsWith('.qcow2'))!);
    const run = (image: string) => runIsolated(['exec', '--image', image, '-q', '--', 'sh', '-c', 'cat /etc/os-release; ls /sys/firmware/efi >/dev/null 2>&1 || echo no-efi-runtime; uname -m'], { env });
    const booted = await run(qcow2);
    expect(booted.exitCode, booted.stderr).toBe(0);
    expect(booted.stdout).toContain('VERSION_CODENAME=bookworm');
    expect(booted.stdout).toMatch(/x86_64$/);
    const raw = join(tempDir(), 'disk.raw');
    await execa('qemu-img', ['convert', '-O', 'raw', qcow2, raw]);
    const again = await run(raw);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toContain('VERSION_CODENAME=bookworm');
    // A BIOS disk's layout: the same root file system in the one partition of an MBR (dos) table.
    const mbr = join(tempDir(), 'mbr.raw');
    const root = (JSON.parse((await execa('sfdisk', ['--json', raw])).stdout) as { partitiontable: { partitions: { start: number; size: number; type: string }[] } }).partitiontable.partitions.at(-1)!;
    await execa('truncate', ['-s', '4G', mbr]);
    await execa('sfdisk', ['-q', mbr], { input: `label: dos\nstart=2048, size=${root.size}, type=83, bootable\n` });
    await execa('dd', [`if=${raw}`, `of=${mbr}`, 'bs=512', `skip=${root.start}`, 'seek=2048', `count=${root.size}`, 'conv=sparse,notrunc', 'status=none']);
    const bios = await run(mbr);
    expect(bios.exitCode, bios.stderr).toBe(0);
    expect(bios.stdout).toContain('VERSION_CODENAME=bookworm');
    // The same disk as a box: imported once, then builds in it over 9p (booted, then restored) and virtiofs (always booted).
    const box = `t-kiwi-oem-${process.pid}`;
    const imported = await runIsolated(['box', 'import', box, qcow2], { env });
    expect(imported.exitCode, imported.stderr).toBe(0);
    try {
      for (const [sharing, warm] of [['9p', false], ['9p', true], ['virtiofs', false]] as const) {
        const out = join(tempDir(), 'out');
        const built = await runIsolated(['--box', box, '--sharing', sharing, '-v', '--', '--description', join(REPO, 'examples/hello'), '--target-dir', out], { env });
        expect(built.exitCode, built.stderr).toBe(0);
        expect(readFileSync(join(out, 'hello/built-on.txt'), 'utf8')).toMatch(/x86_64/);
        expect(built.stderr.includes('guest agent ready (restored)')).toBe(warm);
      }
    } finally {
      await runIsolated(['box', 'remove', box], { env });
    }
  });

  test('the Live ISO is a hybrid ISO 9660 image', { timeout: 2 * HOUR }, async () => {
    const target = await build('x86_64', 'iso');
    const iso = join(target, readdirSync(target).find((name) => name.endsWith('.iso'))!);
    expect(readAt(iso, 0x8001, 5).toString('latin1')).toBe('CD001');
    expect(readAt(iso, 510, 2)).toEqual(Buffer.from([0x55, 0xaa]));
  });
});

describe('x86_64 kiwi failures', () => {
  test('a description kiwi refuses: kiwi\'s exit status, result.code and its log, no result', { timeout: HOUR }, async () => {
    const description = tempDir();
    const broken = readFileSync(join(EXAMPLE, 'config.xml'), 'utf8').replace('<packagemanager>apt</packagemanager>', '<packagemanager>nonsense</packagemanager>');
    await execa('sh', ['-c', 'cat >"$1"', 'sh', join(description, 'config.xml')], { input: broken });
    const target = join(tempDir(), 'out');
    await fetchTestBox('debian-kiwi', 'x86_64');
    const result = await runIsolated(['--box', 'debian-kiwi', '--arch', 'x86_64', '-q', '--', '--description', description, '--target-dir', target], { env: { BOXBUILD_CACHE_DIR: TEST_CACHE } });
    expect(result.exitCode).toBe(1);
    expect(readFileSync(join(target, 'result.code'), 'utf8').trim()).toBe('1');
    expect(readFileSync(join(target, 'result.log'), 'utf8')).toMatch(/packagemanager|nonsense|Schema/i);
    expect(readdirSync(target).filter((name) => /\.tar\.xz$/.test(name))).toEqual([]);
  });
});

describe('aarch64 images', () => {
  test('the root tarball holds arm64 programs', { timeout: 3 * HOUR }, async () => {
    const target = await build('aarch64', 'tbz');
    const tarball = join(target, readdirSync(target).find((name) => name.endsWith('.tar.xz'))!);
    // Paths in kiwi's root tarball have no leading "./" (as the x86_64 build's test reads them).
    const bash = Buffer.from((await execa('tar', ['-xJOf', tarball, 'usr/bin/bash'], { encoding: 'buffer', stripFinalNewline: false })).stdout);
    expect(bash.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(bash.readUInt16LE(18)).toBe(0xb7); // e_machine: EM_AARCH64
  });
});
