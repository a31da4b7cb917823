import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { writeCpio } from '../../../src/guest/cpio.js';
import { moduleClosure } from '../../../src/guest/kernel.js';
import { trimPackages } from '../../../src/guest/make-debian-system.js';
import { encodeRequest, encodeSshdRequest, encodeWindowSize, parseGuestMessage } from '../../../src/runner/protocol.js';

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
  test('one line per request: base64 fields ("-" when empty), values without a line break as they are', () => {
    const argv = ['printf', 'a b  $(x) "q" ü\\', '', 'two\nlines\n'];
    const text = encodeRequest({
      mounts: [{ modules: [], fstype: '9p', source: 'target', target: '/target', options: '' }],
      env: { LANG: 'C.UTF-8' },
      cwd: '/work dir',
      argv,
    });
    const lines = text.trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(/RUN$/);
    expect(lines.find((l) => l.startsWith('MOUNT '))!.split(' ')).toEqual(['MOUNT', 'OXA=', 'dGFyZ2V0', 'L3RhcmdldA==', '-', '-']);
    expect(lines).toContain('CWDTEXT /work dir');
  });

  // The agent takes the quotes off with: eval "set -- $argv" (busybox ash in initramfs boxes, dash in system boxes).
  test.each(['dash', 'busybox sh'])('ARGV: %s gets every argument back byte-exact, also thousands of them', (shell) => {
    const argv = ['printf', "it's", "''", 'a b  $(x) `y` "q" ü\\', '', 'two\nlines\n\n', '*', '-n', '\\\'', ...Array.from({ length: 5000 }, (_, i) => `arg ${i}`)];
    const text = encodeRequest({ mounts: [], env: {}, cwd: '/', argv });
    const match = /\nARGV (\d+)\n/.exec(text)!;
    const start = match.index + match[0].length;
    const block = Buffer.from(text).subarray(Buffer.byteLength(text.slice(0, start)), Buffer.byteLength(text.slice(0, start)) + Number(match[1]));
    expect(Buffer.from(text).subarray(Buffer.byteLength(text.slice(0, start)) + Number(match[1])).toString()).toBe('RUN\n');
    const [file, ...args] = shell.split(' ');
    const out = execFileSync(file!, [...args, '-c', 'eval "set -- $1"; for a; do printf "%s\\0" "$a"; done', 'sh', block.toString()]);
    expect(out.toString().split('\0').slice(0, -1)).toEqual(argv);
  });

  test('fresh random bytes as octal escapes; the clock only for a restored guest', () => {
    const cold = encodeRequest({ mounts: [], env: {}, cwd: '/', argv: ['true'] }).split('\n');
    expect(cold[0]).toMatch(/^SEED (\\[0-3][0-7]{2}){64}$/);
    expect(cold.some((l) => l.startsWith('CLOCK'))).toBe(false);
    const warm = encodeRequest({ mounts: [], env: {}, cwd: '/', argv: ['true'] }, true).split('\n');
    expect(Number(warm[0]!.replace('CLOCK ', ''))).toBeCloseTo(Date.now() / 1000, -1);
  });

  test('the terminal: its size, what runs on it; the SSH request carries it, the directory and environment too', () => {
    const terminal = { rows: 33, cols: 77, command: true, debugShell: true };
    const lines = encodeRequest({ mounts: [], env: {}, cwd: '/', argv: ['top'], terminal }).split('\n');
    expect(lines.slice(lines.indexOf('TERMINAL 33 77'), lines.indexOf('TERMINAL 33 77') + 3)).toEqual(['TERMINAL 33 77', 'TTY', 'DEBUGSHELL']);
    const shellOnly = encodeRequest({ mounts: [], env: {}, cwd: '/', argv: ['make'], terminal: { ...terminal, command: false } });
    expect(shellOnly).not.toMatch(/^TTY$/m);
    expect(encodeRequest({ mounts: [], env: {}, cwd: '/', argv: ['make'] })).not.toMatch(/TERMINAL|TTY|DEBUGSHELL/);
    const sshd = encodeSshdRequest({ mounts: [], env: { A: 'b' }, cwd: '/work', stdin: true, terminal }, 'ssh-ed25519 KEY').split('\n');
    expect(sshd).toEqual(expect.arrayContaining([`ENV ${Buffer.from('A=b').toString('base64')}`, 'CWDTEXT /work', 'TERMINAL 33 77', 'DEBUGSHELL']));
    expect(sshd).not.toContain('STDIN'); // the session's stdin is the command's, not the agent's
    expect(sshd.at(-2)).toMatch(/^SSHD /);
    expect(encodeWindowSize({ rows: 50, cols: 132 })).toBe('WINSZ 50 132\n');
  });

  test('parses the guest messages', () => {
    expect(parseGuestMessage('READY 1')).toEqual({ type: 'ready', version: 1 });
    expect(parseGuestMessage('SHELL 9')).toEqual({ type: 'shell', status: 9 });
    expect(parseGuestMessage('EXIT 7 2000000 12')).toEqual({ type: 'exit', status: 7, output: { stdout: 2000000, stderr: 12 } });
    expect(parseGuestMessage(`ERROR ${Buffer.from('mount failed').toString('base64')}`)).toEqual({ type: 'error', message: 'mount failed' });
    expect(parseGuestMessage('EXIT x')).toEqual({ type: 'unknown', line: 'EXIT x' });
    expect(parseGuestMessage('EXIT 7')).toEqual({ type: 'unknown', line: 'EXIT 7' });
  });
});

describe('the package index debootstrap gets in the VM', () => {
  test('holds only the stanzas of the packages in the tarball', () => {
    const index = 'Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\nDepends: a\n\n\nPackage: c\nVersion: 3\n';
    expect(trimPackages(index, new Set(['b', 'c']))).toBe('Package: b\nVersion: 2\nDepends: a\n\nPackage: c\nVersion: 3\n\n');
    expect(trimPackages(index, new Set())).toBe('');
  });
});
