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
  test('one line per request; a MOUNT, ENV or ARGV without a line break, and short, as words on its line', () => {
    const text = encodeRequest({
      mounts: [{ modules: ['9p', '9pnet_virtio'], fstype: '9p', source: 'target', target: "/it's", options: '' }],
      env: { LANG: 'C.UTF-8', A: 'x y' },
      cwd: '/work dir',
      argv: ['make', '-j2'],
    });
    expect(text.split('\n').slice(1)).toEqual([
      "MOUNTTEXT '9p' 'target' '/it'\\''s' '' '9p 9pnet_virtio'",
      "ENVTEXT 'LANG=C.UTF-8' 'A=x y'",
      'CWDTEXT /work dir',
      "ARGVTEXT 'make' '-j2'",
      'RUN',
      '',
    ]);
  });

  /** Each words request of `text` (a line's rest, or a block), in order. */
  const wordsOf = (text: string, verb: string): string[] => {
    const found: string[] = [];
    const bytes = Buffer.from(text);
    for (let at = 0; at < bytes.length; ) {
      const end = bytes.indexOf('\n', at);
      const line = bytes.subarray(at, end).toString();
      const block = /^(MOUNT|ENV|ARGV) (\d+)$/.exec(line);
      if (line.startsWith(`${verb}TEXT `)) found.push(line.slice(verb.length + 5));
      if (block) {
        if (block[1] === verb) found.push(bytes.subarray(end + 1, end + 1 + Number(block[2])).toString());
        at = end + 1 + Number(block[2]);
      } else at = end + 1;
    }
    return found;
  };
  // The agent takes the quotes off with one eval (busybox ash in initramfs boxes, dash in system boxes).
  const evalWords = (shell: string, words: string) => {
    const [file, ...args] = shell.split(' ');
    const out = execFileSync(file!, [...args, '-c', 'eval "set -- $1"; for a; do printf "%s\\0" "$a"; done', 'sh', words]);
    return out.toString().split('\0').slice(0, -1);
  };

  test.each(['dash', 'busybox sh'])('ARGV, ENV and MOUNT: %s gets every value back byte-exact, on a line or in a block, also thousands of them', (shell) => {
    const odd = ["it's", "''", 'a b  $(x) `y` "q" ü\\', '', '*', '-n', "\\'"];
    const argvs = [['printf', ...odd], ['printf', 'two\nlines\n\n', ...odd], ['printf', ...odd, ...Array.from({ length: 5000 }, (_, i) => `arg ${i}`)]];
    for (const argv of argvs) {
      const env = { A: odd.join(' '), B: 'two\nlines' };
      const mount = { modules: [], fstype: '9p', source: 'target', target: '/a\nb', options: "o'" };
      const text = encodeRequest({ mounts: [mount], env, cwd: '/', argv });
      expect(text.endsWith('RUN\n')).toBe(true);
      expect(wordsOf(text, 'ARGV').map((words) => evalWords(shell, words))).toEqual([argv]);
      expect(wordsOf(text, 'ENV').map((words) => evalWords(shell, words))).toEqual([['A=' + env.A, 'B=' + env.B]]);
      expect(wordsOf(text, 'MOUNT').map((words) => evalWords(shell, words))).toEqual([['9p', 'target', '/a\nb', "o'", '']]);
    }
    expect(wordsOf(encodeRequest({ mounts: [], env: {}, cwd: '/', argv: argvs[0]! }), 'ARGV')).toHaveLength(1);
    expect(encodeRequest({ mounts: [], env: {}, cwd: '/', argv: argvs[1]! })).toMatch(/\nARGV \d+\n/);
    expect(encodeRequest({ mounts: [], env: {}, cwd: '/', argv: argvs[2]! })).toMatch(/\nARGV \d+\n/);
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
    expect(sshd).toEqual(expect.arrayContaining(["ENVTEXT 'A=b'", 'CWDTEXT /work', 'TERMINAL 33 77', 'DEBUGSHELL']));
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
