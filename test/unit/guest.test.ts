import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { writeCpio } from '../../src/guest/cpio.js';
import { moduleClosure } from '../../src/guest/kernel.js';
import { encodeRequest, parseGuestMessage } from '../../src/runner/protocol.js';

describe('cpio writer', () => {
  test('writes a newc archive that cpio(1) lists, with modes and symlinks', () => {
    const archive = writeCpio([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: '/bin/tool', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'tool' },
    ]);
    const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: archive }).toString();
    expect(listing).toMatch(/^drwxr-xr-x .* bin$/m);
    expect(listing).toMatch(/^-rwxr-xr-x .* root +root +10 .* bin\/tool$/m);
    expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> tool$/m);
  });
  test('is reproducible', () => {
    const entries = [{ type: 'file' as const, path: 'a', data: Buffer.from('x') }];
    expect(writeCpio(entries).equals(writeCpio(entries))).toBe(true);
  });
});

describe('moduleClosure', () => {
  const dep = [
    'kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko',
    'kernel/net/9p/9pnet.ko:',
    'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko',
    'kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko',
    'kernel/fs/netfs/netfs.ko:',
    'kernel/drivers/virtio/virtio_ring.ko:',
  ].join('\n');
  test('puts every module after its dependencies, once', () => {
    const order = moduleClosure(dep, 'kernel/drivers/virtio/virtio.ko\n', ['9pnet_virtio', '9p', 'virtio']);
    expect(order).toEqual([
      'kernel/net/9p/9pnet.ko',
      'kernel/drivers/virtio/virtio_ring.ko',
      'kernel/net/9p/9pnet_virtio.ko',
      'kernel/fs/netfs/netfs.ko',
      'kernel/fs/fscache/fscache.ko',
      'kernel/fs/9p/9p.ko',
    ]);
  });
  test('a module neither loadable nor built in is an error', () => {
    expect(() => moduleClosure(dep, '', ['nosuch'])).toThrow('no module "nosuch"');
  });
});

describe('guest protocol', () => {
  test('every field is base64 on one line, empty fields are "-"', () => {
    const text = encodeRequest({
      mounts: [{ modules: [], fstype: '9p', source: 'target', target: '/target', options: '' }],
      env: { LANG: 'C.UTF-8' },
      cwd: '/',
      argv: ['printf', 'a b\n$(x) "q" ü', ''],
    });
    const lines = text.trimEnd().split('\n');
    expect(lines.at(-1)).toBe('RUN');
    for (const line of lines) expect(line).toMatch(/^[A-Z]+( [A-Za-z0-9+/=-]+)*$/);
    const args = lines.filter((l) => l.startsWith('ARG ')).map((l) => l.slice(4));
    expect(args.map((a) => (a === '-' ? '' : Buffer.from(a, 'base64').toString()))).toEqual(['printf', 'a b\n$(x) "q" ü', '']);
    expect(lines.find((l) => l.startsWith('MOUNT '))!.split(' ')).toHaveLength(6);
    expect(Number(lines[0]!.replace('CLOCK ', ''))).toBeCloseTo(Date.now() / 1000, -1);
    expect(Buffer.from(lines[1]!.replace('SEED ', ''), 'base64')).toHaveLength(64);
  });
  test('parses the guest messages', () => {
    expect(parseGuestMessage('READY 1')).toEqual({ type: 'ready', version: 1 });
    expect(parseGuestMessage('EXIT 7')).toEqual({ type: 'exit', status: 7 });
    expect(parseGuestMessage(`ERROR ${Buffer.from('mount failed').toString('base64')}`)).toEqual({ type: 'error', message: 'mount failed' });
    expect(parseGuestMessage('EXIT x')).toEqual({ type: 'unknown', line: 'EXIT x' });
  });
});
