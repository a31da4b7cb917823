import { existsSync, mkdtempSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkGuestPath, parseBuildArgs, parseShareSpec, splitAtDoubleDash } from '../../../src/runner/args.js';
import { isWithin } from '../../../src/util/file.js';
import { buildDirectories, execCommand } from '../../../src/runner/commands.js';
import { parseDurationMs, parseMemoryMiB, parsePositiveInt } from '../../../src/util/size.js';

describe('splitAtDoubleDash', () => {
  test('splits at the first --, keeping later ones as build arguments', () => {
    expect(splitAtDoubleDash(['--box', 'x', '--', 'a', '--', 'b'])).toEqual({ own: ['--box', 'x'], build: ['a', '--', 'b'] });
    expect(splitAtDoubleDash(['--box', 'x'])).toEqual({ own: ['--box', 'x'], build: undefined });
  });
});

describe('parseBuildArgs', () => {
  test('takes out --description and --target-dir in both spellings, keeps the rest in order', () => {
    expect(parseBuildArgs(['--type', 'oem', '--description', 'd', '--target-dir=t', 'x y'])).toEqual({
      description: 'd',
      targetDir: 't',
      rest: ['--type', 'oem', 'x y'],
    });
  });
  test('refuses a missing value or a repeated option', () => {
    expect(() => parseBuildArgs(['--description'])).toThrow('--description needs a directory');
    expect(() => parseBuildArgs(['--description=', 'x'])).toThrow('--description needs a directory');
    expect(() => parseBuildArgs(['--target-dir', 'a', '--target-dir', 'b'])).toThrow('given twice');
  });
});

describe('paths', () => {
  test('isWithin', () => {
    expect(isWithin('/a/b', '/a')).toBe(true);
    expect(isWithin('/a', '/a')).toBe(true);
    expect(isWithin('/ab', '/a')).toBe(false);
    expect(isWithin('/', '/a')).toBe(false);
  });
  test('guest paths must not hide the guest system', () => {
    expect(checkGuestPath('/work/src/')).toBe('/work/src');
    expect(() => checkGuestPath('relative')).toThrow('must be absolute');
    expect(() => checkGuestPath('/a/../proc')).toThrow('must be absolute');
    expect(() => checkGuestPath('/')).toThrow('root');
    expect(() => checkGuestPath('/proc/x')).toThrow('/proc');
    expect(() => checkGuestPath('/usr')).toThrow('/usr');
  });
  test('share specs: HOST[:GUEST][:ro]', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bb-unit-'));
    expect(parseShareSpec(dir)).toEqual({ hostPath: dir, guestPath: dir, readOnly: false });
    expect(parseShareSpec(`${dir}:ro`)).toEqual({ hostPath: dir, guestPath: dir, readOnly: true });
    expect(parseShareSpec(`${dir}:/src:ro`)).toEqual({ hostPath: dir, guestPath: '/src', readOnly: true });
    expect(parseShareSpec(`${dir}:/src:rw`)).toEqual({ hostPath: dir, guestPath: '/src', readOnly: false });
    expect(() => parseShareSpec(`${dir}/missing`)).toThrow('does not exist');
    expect(() => parseShareSpec(`${dir}:/a:/b`)).toThrow('expected HOST[:GUEST][:ro]');
  });
  test('symlinks are resolved before the target and the description are compared', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bb-unit-'));
    const desc = join(dir, 'desc');
    mkdirSync(desc);
    symlinkSync('desc', join(dir, 'dlink'));
    symlinkSync(dir, join(desc, 'up'));
    expect(() => buildDirectories(['--description', desc, '--target-dir', join(dir, 'dlink/out')])).toThrow('lies inside the description');
    expect(() => buildDirectories(['--description', desc, '--target-dir', join(dir, 'dlink/a/b')])).toThrow('lies inside the description');
    expect(existsSync(join(desc, 'out')) || existsSync(join(desc, 'a'))).toBe(false);
    expect(() => buildDirectories(['--description', join(dir, 'dlink'), '--target-dir', join(desc, 'up/x/..')])).toThrow('lies inside the target directory');
    expect(buildDirectories(['--description', join(dir, 'dlink'), '--target-dir', join(dir, 'out')])).toMatchObject({ description: desc, targetDir: join(dir, 'out') });
  });
  test('exec: the current directory is looked up among the shares by its real path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bb-unit-'));
    mkdirSync(join(dir, 'sub'));
    symlinkSync(join(dir, 'sub'), join(dir, 'link'));
    expect(execCommand([`${dir}/sub:/src`].map(parseShareSpec), ['make'], join(dir, 'link')).cwd).toBe('/src');
  });
  test('exec runs in the guest path of the current directory when it is shared', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bb-unit-'));
    mkdirSync(join(dir, 'sub'));
    expect(execCommand([`${dir}:/src`].map(parseShareSpec), ['make'], join(dir, 'sub')).cwd).toBe('/src/sub');
    expect(execCommand([`${dir}:/src`].map(parseShareSpec), ['make'], '/').cwd).toBe('/');
    expect(() => execCommand([`${dir}:/src`, `${dir}:/src`].map(parseShareSpec), ['make'], '/')).toThrow('two shares');
  });
});

describe('sizes and durations', () => {
  test('memory: a bare number is GiB, suffixes are binary units', () => {
    expect(parseMemoryMiB('2')).toBe(2048);
    expect(parseMemoryMiB('2G')).toBe(2048);
    expect(parseMemoryMiB('512M')).toBe(512);
    expect(parseMemoryMiB('512MiB')).toBe(512);
    expect(parseMemoryMiB('1.5g')).toBe(1536);
    expect(() => parseMemoryMiB('lots')).toThrow('not a size');
    expect(() => parseMemoryMiB('64M')).toThrow('too small');
  });
  test('durations: a bare number is seconds', () => {
    expect(parseDurationMs('90', '--timeout')).toBe(90_000);
    expect(parseDurationMs('2m', '--timeout')).toBe(120_000);
    expect(parseDurationMs('500ms', '--timeout')).toBe(500);
    expect(() => parseDurationMs('soon', '--timeout')).toThrow('--timeout');
    expect(() => parseDurationMs('0', '--timeout')).toThrow('greater than zero');
  });
  test('durations a timer cannot hold are refused', () => {
    expect(parseDurationMs(`${2 ** 31 - 1}ms`, '--timeout')).toBe(2 ** 31 - 1);
    expect(() => parseDurationMs(`${2 ** 31}ms`, '--timeout')).toThrow('too long');
    expect(() => parseDurationMs('600h', '--timeout')).toThrow('--timeout: 600h is too long');
  });
  test('positive integers', () => {
    expect(parsePositiveInt('4', '--box-smp-cpus')).toBe(4);
    expect(() => parsePositiveInt('0', '--box-smp-cpus')).toThrow('positive');
    expect(() => parsePositiveInt('2.5', '--box-smp-cpus')).toThrow('positive');
  });
});
